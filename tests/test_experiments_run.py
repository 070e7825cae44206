"""``l2l-run`` end to end at a tiny size: outputs, exact resume after SIGKILL, clear early errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.checkpoint import load_checkpoint
from experiments.report import METRIC_KEYS
from experiments.run import main as run_main
from experiments.runner import KILL_ENV

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(cache, out, *extra):
    """The shipped smoke config made smaller still: 6 warm-up steps, 32 loop steps in chunks of 16."""
    return ["--config", "smoke", "--out", str(out), "--cache-dir", str(cache), "--no-progress",
            "threads=1", "warmup_steps=6", "checkpoint_every=3", "loop_steps=32", "chunk_steps=16",
            "eval_every=16", "eval_subset=8", "log_images=1", "agent_options.l2l.n_steps=16",
            "agent_options.l2l.n_epochs=1", *extra]


@pytest.fixture(scope="module")
def reference(l2l_cache, tmp_path_factory):
    """One uninterrupted tiny run (the ``l2l`` agent)."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    before = torch.get_num_threads()
    assert run_main(tiny_args(l2l_cache, out)) == 0
    torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_run_writes_results_checkpoint_and_logs(reference):
    res = json.loads((reference / "results.json").read_text())
    assert set(res) >= {"config", "metrics", "pseudo_labels", "timing"}
    assert set(res["metrics"]) == {"val", "testA", "testB"}
    for metrics in res["metrics"].values():
        assert set(METRIC_KEYS) <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in METRIC_KEYS)
    pl = res["pseudo_labels"]
    assert pl["steps"] == 32 and pl["segmenter_updates"] == 4 and len(pl["curves"]) == 2
    assert 0.0 <= pl["coverage"] <= 1.0 and pl["pl_precision"] is not None
    assert res["config"]["agent"] == "l2l" and res["config"]["resolved"]["loop_steps"] == 32
    assert {"warmup_s", "loop_s", "eval_s", "total_s", "loop_s_per_1000_samples"} <= set(res["timing"])
    assert json.loads((reference / "config.json").read_text()) == res["config"]
    state = torch.load(reference / "segmenter.pt", weights_only=True)
    assert state["step"] == 6 + 4  # warm-up + one optimiser step per update
    assert (reference / "agent" / "agent.json").is_file()
    assert load_checkpoint(reference / "checkpoint.pt")["stage"] == "done"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    loop = EventAccumulator(str(reference / "tb" / "loop")).Reload().Tags()
    assert {"loop/coverage", "loop/reward", "loop/pl_precision", "loop/seg_loss",
            "loop/pl_iou_prior", "loop/pl_iou_teacher", "loop/pl_iou_label"} <= set(loop["scalars"])
    curves = json.loads((reference / "results.json").read_text())["pseudo_labels"]["curves"]
    assert curves and all({"pl_iou_prior", "pl_iou_teacher", "pl_iou_label"} <= set(c) for c in curves)
    for picture in ("pseudo_label_quality.png", "samples.png"):
        assert (reference / picture).stat().st_size > 1000
    assert any(t.startswith("l2l/") for t in loop["scalars"])
    assert "samples/unlabeled_selection" in loop["images"]
    evals = EventAccumulator(str(reference / "tb" / "eval")).Reload().Tags()
    assert "eval/val/mIoU" in evals["scalars"]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(reference, l2l_cache, tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, **{KILL_ENV: "20", "OMP_WAIT_POLICY": "PASSIVE"})
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *tiny_args(l2l_cache, out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL mid-way through the 2nd chunk
    assert not (out / "results.json").exists()
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["stage"] == "loop" and ckpt["loop_done"] == 16
    assert run_main(tiny_args(l2l_cache, out)) == 2  # refuses to start over an existing run
    assert run_main(tiny_args(l2l_cache, out, "--resume")) == 0

    got = json.loads((out / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert got["metrics"] == want["metrics"]
    assert got["pseudo_labels"] == want["pseudo_labels"]
    assert got["timing"]["resumes"] == 1
    a = torch.load(reference / "segmenter.pt", weights_only=True)
    b = torch.load(out / "segmenter.pt", weights_only=True)
    assert a["step"] == b["step"]
    for key in ("model", "teacher"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    # a finished run resumes to its results without doing anything again
    assert run_main(tiny_args(l2l_cache, out, "--resume")) == 0


def test_corrupt_prior_cache_and_checkpoint_are_clear_errors(l2l_cache, tmp_path, capsys):
    bad = tmp_path / "priors.jsonl"
    bad.write_text('{"format": "l2l-priors/1"}\nthis is not json\n{"id": "1:1"}\n')
    out = tmp_path / "bad-cache"
    assert run_main(tiny_args(l2l_cache, out, "--prior", f"cache/{bad}")) == 2
    err = capsys.readouterr().err
    assert "l2l-run: error:" in err and str(bad) in err and "Traceback" not in err
    assert not (out / "checkpoint.pt").exists()

    out = tmp_path / "bad-ckpt"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x00 truncated")
    assert run_main(tiny_args(l2l_cache, out, "--resume")) == 2
    assert "corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_fully_supervised_run_has_no_loop(l2l_cache, tmp_path):
    out = tmp_path / "full"
    assert run_main(tiny_args(l2l_cache, out, "--label-ratio", "1.0", "warmup_steps=4")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["pseudo_labels"]["steps"] == 0 and res["config"]["resolved"]["mode"] == "supervised"
    # the same optimiser steps as the semi-supervised run: warm-up + 32 / 8 updates x 1 step
    assert torch.load(out / "segmenter.pt", weights_only=True)["step"] == 4 + 4


@pytest.mark.slow
def test_resume_runs_only_the_remaining_steps_and_refuses_another_seed(reference, l2l_cache, tmp_path,
                                                                      monkeypatch, capsys):
    import segmenter
    from l2l_env.env import PseudoLabelEnv

    out = tmp_path / "killed"
    env = dict(os.environ, **{KILL_ENV: "20", "OMP_WAIT_POLICY": "PASSIVE"})
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *tiny_args(l2l_cache, out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert run_main(tiny_args(l2l_cache, out, "--resume", "--seed", "1")) == 2
    assert "another config (differs in ['seed'])" in capsys.readouterr().err
    steps, fits = [], []
    real_step, real_fit = PseudoLabelEnv.step, segmenter.fit
    monkeypatch.setattr(PseudoLabelEnv, "step", lambda self, a: steps.append(1) or real_step(self, a))
    monkeypatch.setattr(segmenter, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    assert run_main(tiny_args(l2l_cache, out, "--resume")) == 0
    assert len(steps) == 32 - 16 and fits == []  # the second chunk only; no warm-up again
    got = json.loads((out / "results.json").read_text())
    assert got["metrics"] == json.loads((reference / "results.json").read_text())["metrics"]


@pytest.mark.slow
def test_loader_workers_change_nothing_even_across_a_resume(reference, l2l_cache, tmp_path):
    """Killed with 2 loader workers, resumed with 1: the results of the 0-worker reference run
    (``num_workers`` only changes how batches are assembled, so a resume may change it)."""
    out = tmp_path / "workers"
    env = dict(os.environ, **{KILL_ENV: "20", "OMP_WAIT_POLICY": "PASSIVE"})
    proc = subprocess.run([sys.executable, "-m", "experiments.run",
                           *tiny_args(l2l_cache, out, "num_workers=2")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert run_main(tiny_args(l2l_cache, out, "--resume", "num_workers=1")) == 0
    got = json.loads((out / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert got["metrics"] == want["metrics"] and got["pseudo_labels"] == want["pseudo_labels"]
    a = torch.load(reference / "segmenter.pt", weights_only=True)
    b = torch.load(out / "segmenter.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
