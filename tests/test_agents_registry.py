"""The agent registry: make by name, errors that list the known names, adding an agent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import agents
from agents.base import read_manifest, write_manifest

BUILTIN = ["agreement", "all", "fusion", "l2l", "none", "oracle-construct", "oracle-select", "prior",
           "random", "threshold"]
ORACLES = {"oracle-construct", "oracle-select"}


def test_available_lists_every_builtin_and_the_sb3_family():
    names = agents.available()
    assert set(BUILTIN) <= set(names) and "sb3:<variant>" in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", BUILTIN)
def test_make_builds_each_builtin(name):
    agent = agents.make(name)
    assert isinstance(agent, agents.Agent) and agent.name == name
    assert agent.is_learner == (name == "l2l")
    assert agent.needs_truth == (name in ORACLES)
    assert agents.agent_class(name) is type(agent)


def test_every_registered_name_is_known_here():
    """A new agent must be added to BUILTIN (and so to the tests that go over it). Agents that
    other tests register from plugin modules are not the package's own."""
    own = {n for n in agents.available()
           if agents.agent_class(n.replace("<variant>", "ppo")).__module__.startswith("agents.")}
    assert own == set(BUILTIN) | {"sb3:<variant>"}


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "l2l"])
@pytest.mark.parametrize("form", ["construct", "select"])
def test_every_heuristic_speaks_both_action_forms(name, form):
    g = 4
    obs = {k: np.full((1, g, g), 0.97, np.float32) for k in ("prior", "student", "teacher", "truth")}
    obs.update(uncertainty=np.zeros((1, g, g), np.float32), text=np.zeros(8, np.float32),
               no_prior=np.zeros(1, np.float32), progress=np.zeros(1, np.float32))
    kw = {"p": 1.0} if name == "random" else {}
    action = agents.make(name, action_form=form, **kw).act(obs)
    assert action.shape == (g * g,) and action.dtype == np.int8
    assert set(np.unique(action)) <= (set(range(4)) if form == "construct" else {0, 1})
    if name != "none":  # everything is confidently foreground and right: every cell is labeled
        assert (action != 0).all()


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError) as err:
        agents.make("thresold")
    msg = str(err.value)
    assert "'thresold'" in msg and all(n in msg for n in BUILTIN) and "sb3:<variant>" in msg
    with pytest.raises(KeyError, match="known agents"):
        agents.make("nope:ppo")
    with pytest.raises(KeyError, match="known agents"):
        agents.make("sb3:")


def test_sb3_family_resolves_by_prefix():
    ppo, a2c = agents.make("sb3:ppo"), agents.make("sb3:A2C")
    assert isinstance(ppo, agents.SB3Agent) and ppo.name == "sb3:ppo" and a2c.name == "sb3:a2c"
    with pytest.raises(KeyError, match="unknown Stable-Baselines3 algorithm 'rainbow'.*sb3:ppo"):
        agents.make("sb3:rainbow")
    with pytest.raises(ValueError, match="sb3:dqn acts in Discrete .*sb3:a2c, sb3:ppo"):
        agents.make("sb3:dqn")
    with pytest.raises(TypeError, match="'algo' is given by the name"):
        agents.make("sb3:ppo", algo="a2c")


def test_a_new_agent_is_one_registered_class(tmp_path):
    @agents.register("test-diagonal")
    class Diagonal(agents.Agent):
        """Selects the grid's diagonal."""

        def act(self, obs, deterministic=True):
            g = np.shape(obs["prior"])[-1]
            return np.eye(g, dtype=np.int8).ravel()

        def save(self, path: str | Path) -> Path:
            return write_manifest(path, self.name)

        @classmethod
        def load(cls, path: str | Path) -> "Diagonal":
            read_manifest(path)
            return cls()

    assert "test-diagonal" in agents.available()
    agent = agents.make("test-diagonal")
    assert agent.act({"prior": np.zeros((1, 3, 3))}).tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert agent.learn(env=None, total_steps=10) == {}
    assert isinstance(agents.load(agent.save(tmp_path / "d")), Diagonal)
    with pytest.raises(ValueError, match="already registered"):
        agents.register("test-diagonal")(type("Other", (Diagonal,), {}))


def test_register_rejects_bad_input():
    with pytest.raises(TypeError, match="Agent subclass"):
        agents.register("test-bad")(object)
    with pytest.raises(ValueError, match="only allowed at the end"):
        agents.register("a:b")(agents.AllAgent)
    with pytest.raises(ValueError, match="variant_arg"):
        agents.register("fam:")(agents.AllAgent)


def test_load_without_a_saved_agent_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="agent.json"):
        agents.load(tmp_path)
