"""``sb3:<algo>`` agents: the features extractor, learning on the fake env, save/load, Box-only algos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import agents
from agents.features import MapFeaturesExtractor
from fake_env import FakePseudoLabelEnv

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(env, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    env.reset(seed=seed)
    obs = [env.step(np.zeros(env.action_space.n, np.int8))[0] for _ in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


@pytest.mark.parametrize("grid,image", [(8, False), (4, True)])
def test_features_extractor_reads_maps_and_vectors(grid, image):
    env = FakePseudoLabelEnv(grid_size=grid, text_dim=5, include_image=image)
    fe = MapFeaturesExtractor(env.observation_space, features_dim=24)
    assert fe.map_keys == ["prior", "student", "teacher", "uncertainty"] + (["image"] if image else [])
    assert fe.vec_keys == ["text", "no_prior", "progress"]
    batch = {k: torch.as_tensor(v) for k, v in _batch(env, 3).items()}
    out = fe(batch)
    assert out.shape == (3, 24) and fe.features_dim == 24
    batch["teacher"] = 1.0 - batch["teacher"]
    assert not torch.allclose(fe(batch), out)    # the maps reach the features


def test_sb3_ppo_improves_its_reward_on_fake_env():
    # wrong_cost=0: every correct label pays, so the reward rises with coverage. SB3's PPO clips one
    # joint ratio over all cells, which makes it slow on many cells: a 4x4 grid keeps this short run
    # a check of wiring and direction (seeds 0-3 gained 0.06-0.16 here).
    env = FakePseudoLabelEnv(grid_size=4, wrong_cost=0.0)
    agent = agents.make("sb3:ppo", n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-2,
                        features_dim=64, seed=0)
    out = agent.learn(env, total_steps=1024)
    rewards = [h["mean_reward"] for h in agent.history]
    assert out["updates"] == len(rewards) == 16 and agent.history[-1]["env_steps"] == 1024
    assert np.mean(rewards[-4:]) > np.mean(rewards[:4]) + 0.03, rewards
    assert agent.history[-1]["coverage"] > agent.history[0]["coverage"]


def test_sb3_act_batched_save_load_round_trip(tmp_path):
    env = FakePseudoLabelEnv(grid_size=4)
    agent = agents.make("sb3:a2c", n_steps=8, features_dim=16, seed=1)
    seen = []

    def stop_after_first(agent_, record):
        seen.append(record)
        return False

    agent.learn(env, total_steps=64, callback=stop_after_first)
    assert len(seen) == 1 and len(agent.history) == 1    # the callback stopped it
    batch = _batch(FakePseudoLabelEnv(grid_size=4), 6, seed=3)
    act = agent.act(batch)
    assert act.shape == (6, 16) and act.dtype == np.int8 and set(np.unique(act)) <= {0, 1}
    np.testing.assert_array_equal(agent.act({k: v[2] for k, v in batch.items()}), act[2])
    agent.save(tmp_path / "a2c")
    loaded = agents.load(tmp_path / "a2c")
    assert loaded.name == "sb3:a2c" and loaded.history == agent.history
    np.testing.assert_array_equal(loaded.act(batch), act)


def test_box_only_algorithm_runs_through_cell_weights(tmp_path):
    env = FakePseudoLabelEnv(grid_size=4, episode_steps=16)
    agent = agents.make("sb3:sac", features_dim=16, learning_starts=8, batch_size=8, buffer_size=64, seed=0)
    agent.learn(env, total_steps=40)
    assert agent.model is not None and agent.model.action_space.shape == (16,)
    batch = _batch(FakePseudoLabelEnv(grid_size=4), 3)
    act = agent.act(batch)
    assert act.shape == (3, 16) and set(np.unique(act)) <= {0, 1}
    weights, _ = agent.model.predict(batch, deterministic=True)
    np.testing.assert_array_equal(act, (weights > 0).astype(np.int8))
    loaded = agents.load(agent.save(tmp_path / "sac"))
    np.testing.assert_array_equal(loaded.act(batch), act)


def test_act_before_learning_says_what_to_do():
    with pytest.raises(RuntimeError, match="call learn"):
        agents.make("sb3:ppo").act(_batch(FakePseudoLabelEnv(grid_size=4), 1))


def test_sb3_agents_refuse_the_construct_form():
    """SB3 agents learn the selection ablation only (``action="select"``)."""
    env = FakePseudoLabelEnv(grid_size=4, action="construct")
    with pytest.raises(ValueError, match="MultiBinary"):
        agents.make("sb3:ppo", n_steps=8, features_dim=16).learn(env, total_steps=8)
    with pytest.raises(TypeError, match="MultiBinary"):
        agents.make("sb3:sac", features_dim=16, buffer_size=64).learn(env, total_steps=8)
