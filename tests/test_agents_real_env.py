"""Every registered agent (each SB3 algorithm that acts in the env among them) on the real
``l2l/PseudoLabel-v0`` env at a tiny size, in both action forms; the l2l constructor learning from
the env's held-out scores."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import agents
import l2l_env
from agents.sb3_agent import supported_algorithms
from env_fixtures import tiny_env_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")
FORMS = ("construct", "select")
SMALL_L2L = dict(hidden=8, dilations=(1, 2))


def registered_agents() -> list[str]:
    """Every name of ``agents.available()``, the ``sb3:`` family as each algorithm that acts in
    the env (``sb3:a2c``, ``sb3:ppo``)."""
    names = [n for n in agents.available() if not n.endswith(":<variant>")]
    return names + supported_algorithms()


@pytest.fixture(scope="module")
def envs(l2l_cache):
    """One env per (action form, oracle observation)."""
    made = {(form, oracle): gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(
        l2l_cache, episode_steps=12, action=form, oracle_obs=oracle))
        for form in FORMS for oracle in (False, True)}
    yield made
    for e in made.values():
        e.close()


@pytest.fixture(scope="module")
def env(envs):
    return envs[("construct", False)]


def _make(name: str, form: str) -> agents.Agent:
    if name.startswith("sb3:"):
        ppo = dict(batch_size=8, n_epochs=1) if name == "sb3:ppo" else {}
        return agents.make(name, n_steps=8, features_dim=16, **ppo)
    if name == "l2l":
        select = {"explore": True, "pg_coef": 1.0} if form == "select" else {}
        return agents.make(name, action_form=form, n_steps=8, minibatch_size=8, n_epochs=1,
                           **select, **SMALL_L2L)
    return agents.make(name, action_form=form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", registered_agents())
def test_every_agent_acts_on_the_real_env_of_its_form(envs, name, form):
    cls = agents.agent_class(name)
    env = envs[(form, cls.needs_truth)]
    agent = _make(name, form)
    if agent.is_learner:             # a few steps of learning in this form, then act in it
        out = agent.learn(env, total_steps=8)
        assert out["updates"] == 1, out
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        assert action.shape == env.action_space.shape and env.action_space.contains(action)
        obs, reward, _, _, info = env.step(action)
        assert np.isfinite(reward) and info["coverage"] == pytest.approx(float((action != 0).mean()))
        assert info["oracle"] is bool(cls.needs_truth)


def test_l2l_learns_on_the_real_env(env, tmp_path):
    agent = agents.make("l2l", n_steps=8, minibatch_size=8, n_epochs=2, **SMALL_L2L)
    out = agent.learn(env, total_steps=16)
    assert out["updates"] == 2 and len(agent.history) == 2
    for rec in agent.history:           # calibration_every=4: 2 scored steps in every 8
        assert rec["scored_steps"] == 2 and np.isfinite(rec["all_action_loss"])
        assert np.isfinite(rec["mean_reward"]) and 0 <= rec["coverage"] <= 1
    obs, _ = env.reset()
    loaded = agents.load(agent.save(tmp_path / "l2l"))
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    assert env.action_space.contains(agent.act(obs, deterministic=False))


class ScoredSteps(gym.Wrapper):
    """Keeps the observation and ``info["cell_scores"]`` of every scored step."""

    def __init__(self, env):
        super().__init__(env)
        self.seen: list[tuple[dict, np.ndarray]] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.last = obs
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        if out[4]["scored"]:
            self.seen.append((self.last, out[4]["cell_scores"]))
        self.last = out[0]
        return out


def test_l2l_learning_raises_the_expected_heldout_score(l2l_cache):
    env = ScoredSteps(gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, episode_steps=100)))
    kw = dict(n_steps=16, minibatch_size=16, n_epochs=4, learning_rate=1e-2, seed=0, **SMALL_L2L)
    agent, untrained = agents.make("l2l", **kw), agents.make("l2l", **kw)   # same seeded start
    agent.learn(env, total_steps=32)
    assert len(env.seen) == 8 and sum(h["scored_steps"] for h in agent.history) == 8
    batch = {k: np.stack([o[k] for o, _ in env.seen]) for k in env.seen[0][0]}
    scores = np.stack([s for _, s in env.seen])

    def expected(a):          # the policy's expected heldout reward on the scored steps
        return float((a.probabilities(batch) * scores).sum(axis=(1, 2)).mean())

    np.testing.assert_array_equal(untrained.probabilities(batch).shape, (8, 64, 4))
    # measured: 0.50 -> 0.75 (seeds 0-2 alike)
    assert expected(agent) > expected(untrained) + 0.1, (expected(untrained), expected(agent))


def test_l2l_ppo_selection_learns_on_the_real_env(envs):
    env = envs[("select", False)]
    agent = agents.make("l2l", action_form="select", explore=True, pg_coef=1.0, n_steps=8,
                        minibatch_size=8, n_epochs=1, **SMALL_L2L)
    agent.learn(env, total_steps=16)
    assert len(agent.history) == 2 and all(np.isfinite(h["policy_loss"]) for h in agent.history)
    # the env's heldout scores are of the 4 construct choices: no all-action term under select
    assert all(h["scored_steps"] == 0 and "all_action_loss" not in h for h in agent.history)
    with pytest.raises(ValueError, match="action_form"):
        agent.learn(envs[("construct", False)], total_steps=8)


@pytest.mark.parametrize("form", FORMS)
def test_sb3_ppo_learns_on_the_real_env(envs, tmp_path, form):
    env = envs[(form, False)]
    agent = _make("sb3:ppo", form)
    agent.learn(env, total_steps=16)
    assert len(agent.history) == 2 and np.isfinite(agent.history[-1]["mean_reward"])
    obs, _ = env.reset()
    loaded = agents.load(agent.save(tmp_path / "ppo"))
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    assert env.action_space.contains(agent.act(obs))
