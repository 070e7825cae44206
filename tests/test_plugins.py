"""Agents and rewards from outside the package: ``--import MODULE`` registers them for a run."""

from __future__ import annotations

import json

import pytest

from experiments.run import main as run_main
from plugin_fixtures import plugin_module

PLUGIN = '''
import numpy as np
import agents
from agents.heuristics import CellRuleAgent
from l2l_env import labels as L
from l2l_env.rewards import Reward, RewardResult, register_reward


@agents.register("plugin-teacher")
class PluginTeacher(CellRuleAgent):
    """Label every cell like the teacher (a one-file agent from outside the package)."""

    def rule(self, maps):
        return np.full(maps["teacher"].shape, L.TEACHER, np.int8)


@register_reward("plugin-phrase-length")
class PhraseLength(Reward):
    """Reward = phrase length / 100: reads an extra the env gives on request."""

    needs = ("phrase", "image")

    def step(self, ctx):
        assert ctx.extras["image"].ndim == 3
        return RewardResult(value=len(ctx.extras["phrase"]) / 100.0)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    with plugin_module(tmp_path, monkeypatch, "l2l_test_plugin", PLUGIN) as name:
        yield name


def test_a_plugin_agent_and_reward_run_through_l2l_run(plugin, l2l_cache, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--config", "smoke", "--out", str(out), "--cache-dir", str(l2l_cache), "--no-progress",
            "--import", plugin, "--agent", "plugin-teacher", 'env.reward="plugin-phrase-length"',
            "env.calibration_every=0", "warmup_steps=2", "loop_steps=16", "chunk_steps=8",
            "eval_every=0", "log_images=0", "threads=1"]
    assert run_main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["agent"] == "plugin-teacher"
    assert 0.0 < res["pseudo_labels"]["mean_reward"] < 1.0  # phrase lengths / 100


def test_a_missing_plugin_module_is_named(capsys):
    assert run_main(["--config", "smoke", "--dry-run", "--import", "no_such_plugin_module"]) == 2
    assert "plugin module 'no_such_plugin_module' cannot be imported" in capsys.readouterr().err


def test_a_reward_asking_for_what_the_env_cannot_give_is_refused():
    from l2l_env.rewards import REWARDS, Reward, RewardResult, make_reward

    class Greedy(Reward):
        needs = ("ground_truth",)

        def step(self, ctx):
            return RewardResult(0.0)

    REWARDS["greedy-test"] = Greedy
    try:
        with pytest.raises(ValueError, match=r"needs \['ground_truth'\], which the env cannot give"):
            make_reward("greedy-test")
    finally:
        REWARDS.pop("greedy-test")
