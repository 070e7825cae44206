"""``l2l-ablate``'s collector and tables with missing and NaN runs: a cell built from fewer good
runs than seeds must say so, and a NaN run must not be counted as a run."""

from __future__ import annotations

import json
import math

import pytest

from experiments import ablate

SEEDS = [0, 1, 2]
MIOU = {0: 0.60, 1: 0.64, 2: 0.62}
def _write_run(out, agent: str, ratio: float, seed: int, miou: float) -> None:
    spec = ablate.RunSpec(agent, ratio, seed)
    d = out / "runs" / spec.name
    d.mkdir(parents=True)
    res = {"metrics": {"val": {"mIoU": miou, "oIoU": miou}},
           "pseudo_labels": {"pl_precision": 0.5}, "timing": {"loop_s_per_1000_samples": 1.0}}
    (d / "results.json").write_text(json.dumps(res))  # NaN is written as NaN, as json does


def _ablation(out, broken: dict[int, str]) -> list[ablate.RunSpec]:
    """``l2l`` at 5% over SEEDS, with seed -> "missing" / "nan" runs broken."""
    runs = [ablate.RunSpec("l2l", 0.05, s) for s in SEEDS]
    for s in SEEDS:
        if broken.get(s) == "missing":
            continue
        _write_run(out, "l2l", 0.05, s, math.nan if broken.get(s) == "nan" else MIOU[s])
    return runs


def _row(md: str, metric: str = "mIoU") -> str:
    section = md.split(f"### {metric}")[1]
    return next((line for line in section.splitlines() if line.startswith("| l2l |")), "(no row)")


def _complete_row(values: list[float]) -> str:
    """The row a complete ablation with exactly these runs prints."""
    cells = {("l2l", 0.05): {"mIoU": values, "oIoU": values}}
    md, _ = ablate.tables(cells, ["l2l"], [0.05], "val", list(range(len(values))))
    return _row(md)


def test_complete_cells_are_mean_and_std_over_every_seed(tmp_path):
    runs = _ablation(tmp_path, {})
    cells, split = ablate.collect(tmp_path, runs, None)
    assert split == "val" and cells[("l2l", 0.05)]["mIoU"] == [0.60, 0.64, 0.62]
    md, rows = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    assert _row(md) == "| l2l | 62.00 ± 2.00 |"
    row = next(r for r in rows if r["metric"] == "mIoU")
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.62)


def test_a_cell_whose_every_run_is_nan_shows_no_number(tmp_path):
    runs = _ablation(tmp_path, {s: "nan" for s in SEEDS})
    cells, split = ablate.collect(tmp_path, runs, "val")
    md, _ = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    assert _row(md) == "| l2l | - |"


def test_an_agent_whose_every_run_is_missing_keeps_its_row(tmp_path):
    runs = _ablation(tmp_path, {s: "missing" for s in SEEDS})
    cells, split = ablate.collect(tmp_path, runs, "val")
    assert ("l2l", 0.05) not in cells
    md, _ = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    assert _row(md) == "| l2l | - |"


def test_nan_values_are_read_and_kept_out_of_the_mean(tmp_path):
    runs = _ablation(tmp_path, {1: "nan"})
    cells, _ = ablate.collect(tmp_path, runs, "val")
    values = cells[("l2l", 0.05)]["mIoU"]
    assert len(values) == 3 and math.isnan(values[1])
    assert ablate.mean_std(values) == pytest.approx((0.61, math.sqrt(0.0002)))


@pytest.mark.parametrize("kind", ["missing", "nan"])
def test_a_cell_with_a_broken_run_is_marked_not_shown_as_complete(tmp_path, kind):
    runs = _ablation(tmp_path, {1: kind})
    cells, split = ablate.collect(tmp_path, runs, "val")
    md, _ = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    # seeds 0 and 2 alone: 61.00 +- 1.41; the table of an ablation that really had two seeds
    # prints exactly this row, so an ablation with three seeds and one broken run must not
    assert "61.00 ± 1.41" in _row(md) or "-" in _row(md)
    assert _row(md) != _complete_row([0.60, 0.62])


def test_csv_n_counts_only_runs_with_a_number(tmp_path):
    runs = _ablation(tmp_path, {1: "nan"})
    cells, split = ablate.collect(tmp_path, runs, "val")
    _, rows = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    row = next(r for r in rows if r["metric"] == "mIoU")
    assert row["mean"] == pytest.approx(0.61)
    assert row["n"] == 2, row


def test_csv_n_of_a_missing_run(tmp_path):
    runs = _ablation(tmp_path, {1: "missing"})
    cells, split = ablate.collect(tmp_path, runs, "val")
    _, rows = ablate.tables(cells, ["l2l"], [0.05], split, SEEDS)
    row = next(r for r in rows if r["metric"] == "mIoU")
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.61)
