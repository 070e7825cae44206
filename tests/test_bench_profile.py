"""The profile benchmark's accounting: seconds of a function (all calls, or only those from one
caller) read from cProfile, and disjoint parts whose shares with the rest add up to the phase."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_profile  # noqa: E402

HERE = "tests/test_bench_profile.py"


def _slow(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _outer() -> None:
    _slow(0.03)
    _inner()


def _inner() -> None:
    _slow(0.01)


def _phase() -> None:
    _outer()
    _slow(0.02)


def test_cum_counts_all_calls_or_only_those_of_a_caller():
    stats = bench_profile.profile_stats(_phase)
    total, calls = bench_profile.cum(stats, (HERE, "_slow"))
    assert calls == 3 and 0.055 < total < 0.2
    from_outer, calls = bench_profile.cum(stats, (HERE, "_slow"), (HERE, "_outer"))
    assert calls == 1 and 0.025 < from_outer < total - 0.025
    assert bench_profile.cum(stats, (HERE, "_phase"))[0] >= total
    assert bench_profile.cum(stats, (HERE, "missing")) == (0.0, 0)


def test_parts_table_shares_add_up_and_other_takes_the_rest():
    table = bench_profile.parts_table(2.0, [("forward", 1.0), ("data assembly", 0.5)], units=4)
    rows = {r["part"]: r for r in table["parts"]}
    assert table["profiled_s_per_unit"] == 0.5
    assert rows["forward"]["kind"] == "compute" and rows["data assembly"]["kind"] == "overhead"
    assert abs(sum(r["share"] for r in table["parts"]) - 1.0) < 1e-12
    other = table["parts"][-1]
    assert other["share"] == 0.25 and other["s_per_unit"] == 0.125
