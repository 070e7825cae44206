"""The segmenter benchmark's runs are valid configs, and its tables show every condition."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_grounding  # noqa: E402
import bench_segmenter  # noqa: E402

from segmenter import SegmenterConfig  # noqa: E402


@pytest.mark.parametrize("name", sorted(bench_segmenter.RUNS))
def test_every_run_is_a_valid_segmenter_config(name):
    run = bench_segmenter.RUNS[name]
    assert set(run) <= {"config", "prior_swap", "objects"}
    SegmenterConfig.from_dict(run.get("config", {}))
    assert 0.0 <= run.get("prior_swap", 0.0) <= 1.0


@pytest.mark.parametrize("name", sorted(bench_grounding.VARIANTS))
def test_every_grounding_variant_is_a_valid_segmenter_config(name):
    SegmenterConfig.from_dict(bench_grounding.VARIANTS[name]["config"])


def _run(name: str, use_prior: bool = True) -> dict:
    def split(m: float) -> dict:
        return {"mIoU": m, "oIoU": m, "mIoU_prior_right": 0.9, "mIoU_prior_wrong": 0.4,
                "mIoU_by_kind": {"attribute": m, "position": m / 2}}
    metrics = {"teacher": {s: split(0.8) for s in bench_segmenter.SPLITS},
               "student": {s: split(0.7) for s in bench_segmenter.SPLITS}}
    if use_prior:
        metrics["teacher_no_prior"] = {s: split(0.33) for s in bench_segmenter.SPLITS}
    return {"name": name, "minutes_budget": 3.0, "steps": 10, "train_seconds": 1.0,
            "peak_rss_mb": 1.0, "parameters": 5, "config": {"use_prior": use_prior},
            "metrics": metrics}


def test_markdown_reports_no_prior_and_phrase_kinds():
    results = {"command": "x", "machine": {"cpu": "cpu", "cores": 2, "torch": "t"}, "threads": 1,
               "prior_source": "sim", "headline_model": "teacher", "compare_minutes": 3.0,
               "main": _run("robust"), "comparison": [_run("full"), _run("no_prior", False)]}
    md = bench_segmenter.markdown(results)
    assert "val mIoU no prior" in md and "| 0.330 |" in md
    assert "(trained without)" in md
    assert "| robust | 3 | no prior | 0.330 | 0.165 |" in md
    assert "| no_prior | 3 | trained without prior | 0.800 | 0.400 |" in md
