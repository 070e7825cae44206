"""The examples run as their docstrings say: a custom agent in one file through ``l2l-run
--import``, and plugin modules found from the working directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import agents
from experiments import plugins
from experiments.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]


def test_my_agent_example_runs_through_l2l_run(l2l_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    # margin 0.5: label where prior and teacher agree on the side of 0.5 (a 2-step warm-up leaves
    # the teacher too unsure for the default margin)
    argv = ["--import", "examples.my_agent", "--agent", "mine", "--config", "smoke", "--out",
            str(out), "--cache-dir", str(l2l_cache), "--no-progress", "threads=1", "warmup_steps=2",
            "loop_steps=16", "chunk_steps=8", "eval_every=0", "log_images=0",
            "agent_options.mine.margin=0.5"]
    assert run_main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["agent"] == "mine"
    assert res["config"]["resolved"]["agent_kwargs"] == {"margin": 0.5, "action_form": "construct"}
    assert res["pseudo_labels"]["steps"] == 16 and 0.0 < res["pseudo_labels"]["coverage"] < 1.0
    loaded = agents.load(out / "agent")
    assert type(loaded).__name__ == "Mine" and loaded.margin == 0.5
    # its options are checked from the config like any agent's, before any work
    assert run_main([*argv[:-1], "agent_options.mine.margin=0.9", "--dry-run"]) == 2
    assert "margin=0.9; expected a number in (0, 0.5]" in capsys.readouterr().err


def test_plugins_are_found_in_the_working_directory(tmp_path, monkeypatch):
    """A console script does not put the working directory on the path; plugins.load does."""
    (tmp_path / "l2l_cwd_plugin.py").write_text("FOUND = True\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    try:
        assert plugins.load(["l2l_cwd_plugin"])[-1] == "l2l_cwd_plugin"
        assert sys.modules["l2l_cwd_plugin"].FOUND and sys.path == before
    finally:
        sys.modules.pop("l2l_cwd_plugin", None)
    with pytest.raises(ValueError, match=f"'l2l_nowhere'.*working directory {tmp_path}"):
        plugins.load(["l2l_nowhere"])
