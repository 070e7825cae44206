"""``l2l-ablate``: the run plan, mean +- std aggregation, and a tiny table + plot end to end."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import ablate


def test_plan_adds_supervised_rows_and_names_runs():
    runs = ablate.plan(["threshold", "l2l"], [0.01, 0.05], [0, 1])
    names = [r.name for r in runs]
    assert len(runs) == 2 * (2 * 3 + 1) and len(set(names)) == len(names)
    assert "none-1pct-s0" in names and "supervised-100pct-s1" in names and "l2l-5pct-s1" in names
    assert "sb3:ppo" in ablate.default_agents() and "l2l" in ablate.default_agents()
    assert "none" not in ablate.default_agents() and "threshold" in ablate.default_agents()


def test_tables_give_mean_std_and_gap_closed():
    cells = {("none", 0.05): {"mIoU": [0.50, 0.52], "oIoU": [0.5, 0.5]},
             ("l2l", 0.05): {"mIoU": [0.60, 0.64], "oIoU": [0.6, 0.6]},
             ("supervised", 1.0): {"mIoU": [0.71, 0.71], "oIoU": [0.7, 0.7]}}
    md, rows = ablate.tables(cells, ["l2l"], [0.05], "val", [0, 1])
    assert "| l2l | 62.00 ± 2.83 |" in md
    assert "| supervised only (none) | 51.00 ± 1.41 |" in md
    assert "| l2l | 55% |" in md  # (62 - 51) / (71 - 51)
    row = next(r for r in rows if r["agent"] == "l2l" and r["metric"] == "mIoU")
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.62)


@pytest.mark.slow
def test_tiny_ablation_writes_table_csv_and_plot(l2l_cache, tmp_path):
    out = tmp_path / "abl"
    argv = ["--config", "smoke", "--agents", "threshold,sb3:ppo", "--ratios", "0.2", "--seeds", "0",
            "--out", str(out), "--in-process", "--threads", "1", f"cache_dir=\"{l2l_cache}\"", "warmup_steps=4",
            "checkpoint_every=4", "loop_steps=16", "chunk_steps=16", "eval_every=0", "log_images=0",
            "eval_splits=[\"val\"]", "agent_options.sb3:ppo.n_steps=16"]
    assert ablate.main(argv) == 0
    md = (out / "table.md").read_text()
    for row in ("supervised only (none)", "| threshold |", "| sb3:ppo |",
                "fully supervised (100%)"):
        assert row in md
    with open(out / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["agent"] for r in rows} == {"none", "threshold", "sb3:ppo", "supervised"}
    assert all(r["split"] == "val" for r in rows)
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "ablation.json").read_text())["runs"]
    assert len(runs) == 4 and all(r["ok"] and not r["skipped"] for r in runs)
    # the runs at one ratio and seed share one warm-up (the first trains it, the others load it)
    shared = json.loads((out / "runs" / "threshold-20pct-s0" / "results.json").read_text())
    assert "warmup_from_cache" in shared["data"]
    # resumable: finished runs are skipped
    assert ablate.main(argv) == 0
    assert all(r["skipped"] for r in json.loads((out / "ablation.json").read_text())["runs"])
