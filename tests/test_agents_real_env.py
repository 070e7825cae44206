"""Smoke tests of every agent on the real ``l2l/PseudoLabel-v0`` env at a tiny size."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
import l2l_env
from env_fixtures import tiny_env_kwargs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(l2l_cache):
    e = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, episode_steps=12))
    yield e
    e.close()


@pytest.mark.parametrize("name", ["none", "all", "threshold", "prior", "agreement", "random"])
def test_heuristic_actions_step_the_real_env(env, name):
    agent = agents.make(name)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        assert action.shape == env.action_space.shape and env.action_space.contains(action)
        obs, reward, _, _, info = env.step(action)
        assert np.isfinite(reward) and info["coverage"] == pytest.approx(action.mean())


def test_l2l_learns_on_the_real_env(env, tmp_path):
    agent = agents.make("l2l", n_steps=8, minibatch_size=8, n_epochs=2, hidden=8, dilations=(1, 2))
    out = agent.learn(env, total_steps=16)
    assert out["updates"] == 2 and len(agent.history) == 2
    rec = agent.history[-1]
    assert np.isfinite(rec["mean_reward"]) and np.isfinite(rec["policy_loss"]) and 0 <= rec["coverage"] <= 1
    obs, _ = env.reset()
    loaded = agents.load(agent.save(tmp_path / "l2l"))
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    assert env.action_space.contains(agent.act(obs, deterministic=False))


def test_sb3_ppo_learns_on_the_real_env(env, tmp_path):
    agent = agents.make("sb3:ppo", n_steps=8, batch_size=8, n_epochs=1, features_dim=16)
    agent.learn(env, total_steps=16)
    assert len(agent.history) == 2 and np.isfinite(agent.history[-1]["mean_reward"])
    obs, _ = env.reset()
    loaded = agents.load(agent.save(tmp_path / "ppo"))
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    assert env.action_space.contains(agent.act(obs))
