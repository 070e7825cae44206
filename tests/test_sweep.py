"""The prior-quality sweep (``l2l-ablate --sweep prior``): one tiny ablation per simulated
grounder, then a table and a plot against each grounder's Acc@0.5."""

from __future__ import annotations

import csv

import pytest

from experiments import ablate, sweep


def _argv(out, cache, *extra):
    return ["--sweep", "prior", "--config", "smoke", "--agents", "prior", "--ratios", "0.2",
            "--seeds", "0", "--out", str(out), "--in-process", "--threads", "1",
            f'cache_dir="{cache}"', "warmup_steps=2", "checkpoint_every=8", "loop_steps=8",
            "chunk_steps=8", "eval_every=0", "log_images=0", 'eval_splits=["val"]', *extra]


def test_a_tiny_sweep_writes_its_table_and_plot(l2l_cache, tmp_path):
    out = tmp_path / "sweep"
    assert ablate.main(_argv(out, l2l_cache, "--presets", "kosmos-2,perfect")) == 0
    for preset in ("kosmos-2", "perfect"):  # one resumable ablation per grounder
        assert (out / preset / "runs" / "prior-20pct-s0" / "results.json").is_file()
        assert (out / preset / "runs" / "none-20pct-s0" / "results.json").is_file()
        assert not (out / preset / "runs" / "supervised-100pct-s0").exists()
    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    acc = {r["preset"]: float(r["acc_train"]) for r in rows}
    assert acc["perfect"] == 1.0 and 0.4 < acc["kosmos-2"] < 0.65  # measured, not the preset's
    assert {r["agent"] for r in rows} == {"none", "prior"}
    miou = {r["preset"]: float(r["mean"]) for r in rows
            if r["agent"] == "prior" and r["metric"] == "mIoU" and r["split"] == "val"}
    assert set(miou) == {"kosmos-2", "perfect"} and all(0 <= v <= 1 for v in miou.values())
    md = (out / "sweep.md").read_text()
    assert "| kosmos-2 |" in md and "Where `l2l` pays" in md
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_grounder_is_refused_before_any_run(l2l_cache, tmp_path, capsys):
    assert ablate.main(_argv(tmp_path / "s", l2l_cache, "--presets", "gpt-9")) == 2
    assert "unknown simulated preset(s) ['gpt-9']" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("metric, shown", [("mIoU", ["none", "l2l"]), ("pl_iou_label_end", ["l2l"])])
def test_label_metrics_leave_out_the_agent_that_builds_no_label(metric, shown):
    assert sweep.agents_of(metric, ["none", "l2l"]) == shown
