"""Whatever an agent cannot run on is refused from the config, before any data, warm-up or output:
the agent's class declares the action spaces it acts in and checks its options, and the run's
validation asks every agent without building it (nor the env)."""

from __future__ import annotations

import pytest

from agents.l2l import L2LAgent
from agents.sb3_agent import SB3Agent
from experiments import config as C
from experiments.run import main as run_main
from plugin_fixtures import plugin_module

PLUGIN = '''
import numpy as np
from gymnasium import spaces

import agents
from agents.base import read_manifest, write_manifest


@agents.register("select-only")
class SelectOnly(agents.Agent):
    """Keeps every cell; speaks the selection form only."""

    action_spaces = (spaces.MultiBinary,)

    def act(self, obs, deterministic=True):
        return np.ones(np.size(obs["prior"]), np.int8)

    def save(self, path):
        return write_manifest(path, self.name)

    @classmethod
    def load(cls, path):
        read_manifest(path)
        return cls()
'''


def _run(tmp_path, *extra: str) -> int:
    return run_main(["--config", "smoke", "--out", str(tmp_path / "run"), "--cache-dir",
                     str(tmp_path / "cache"), "--no-progress", "threads=1", *extra])


def _nothing_done(tmp_path) -> bool:
    return not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "dqn"])
def test_sb3_algorithms_that_cannot_act_are_refused_by_dry_run(tmp_path, capsys, algo):
    assert _run(tmp_path, "--agent", f"sb3:{algo}", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"config key 'agent'='sb3:{algo}' cannot run on env.action='construct'" in err
    assert "use one of sb3:a2c, sb3:ppo" in err and "Traceback" not in err


def test_a_refused_agent_starts_no_work(tmp_path, capsys):
    assert _run(tmp_path, "--agent", "sb3:sac") == 2
    assert "sb3:sac acts in Box action spaces only" in capsys.readouterr().err
    assert _nothing_done(tmp_path)


@pytest.mark.parametrize("form", ["construct", "select"])
@pytest.mark.parametrize("name", ["sb3:ppo", "sb3:a2c"])
def test_sb3_agents_pass_validation_in_both_forms(tmp_path, capsys, name, form):
    assert _run(tmp_path, "--agent", name, "--dry-run", f'env.action="{form}"') == 0
    assert "config valid" in capsys.readouterr().err


@pytest.fixture
def select_only(tmp_path, monkeypatch):
    with plugin_module(tmp_path, monkeypatch, "l2l_select_only", PLUGIN) as name:
        yield name


def test_any_agent_declares_its_action_spaces(tmp_path, capsys, select_only):
    """The rule is general: a plugin agent that acts in MultiBinary only is refused on the
    default construct form and accepted on the select form."""
    assert _run(tmp_path, "--import", select_only, "--agent", "select-only") == 2
    err = capsys.readouterr().err
    assert ("agent 'select-only' acts in MultiBinary action spaces only, not in the env's "
            "MultiDiscrete (env action='construct')") in err
    assert _nothing_done(tmp_path)
    assert _run(tmp_path, "--import", select_only, "--agent", "select-only", "--dry-run",
                'env.action="select"') == 0


def test_an_action_form_option_other_than_the_envs_is_refused(tmp_path, capsys):
    assert _run(tmp_path, "--agent", "l2l", 'agent_options.l2l.action_form="select"') == 2
    assert ("agent 'l2l' was given action_form='select', but the env's action form is "
            "'construct'") in capsys.readouterr().err
    assert _nothing_done(tmp_path)


@pytest.mark.parametrize("name, bad_key, cls", [
    ("sb3:ppo", "agent_options.n_step", SB3Agent),
    ("l2l", "agent_options.l2l.hiden", L2LAgent),
])
def test_options_are_checked_without_building_the_agent(tmp_path, capsys, monkeypatch, name,
                                                         bad_key, cls):
    def no_build(*args, **kwargs):
        raise AssertionError(f"validation built {cls.__name__}")

    monkeypatch.setattr(cls, "__init__", no_build)
    C.validate(C.load_config("smoke", {"agent": name}, []), check_paths=False)
    assert _run(tmp_path, "--agent", name, f"{bad_key}=8", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"config key 'agent_options' for agent {name!r}" in err
    assert repr(bad_key.rsplit(".", 1)[1]) in err


def test_heuristic_options_are_checked_by_value(tmp_path, capsys):
    assert _run(tmp_path, "--agent", "threshold", "agent_options.threshold.tau=3", "--dry-run") == 2
    assert "'tau' must be a number in [0.5, 1], got 3" in capsys.readouterr().err
