"""``sb3:<algo>`` agents on the fake env: the features extractor, learning, both action forms,
save/load, exact continuation, TensorBoard records, and the algorithms refused up front."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import agents
from agents.features import MapFeaturesExtractor
from agents.sb3_agent import SB3Agent, supported_algorithms
from experiments.checkpoint import rng_state, set_rng_state
from fake_env import FakePseudoLabelEnv

pytestmark = pytest.mark.usefixtures("one_thread")
FORMS = ("construct", "select")
SB3_ALGOS = ("sb3:a2c", "sb3:ppo")
"""The SB3 algorithms that act in both action forms: the tests below fail if one is refused."""


def _make(name: str, **extra) -> agents.Agent:
    small = dict(n_steps=8, features_dim=16, seed=1)
    if name == "sb3:ppo":
        small.update(batch_size=8, n_epochs=1)
    return agents.make(name, **{**small, **extra})


def _batch(env, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    env.reset(seed=seed)
    obs = [env.step(np.zeros(env.action_space.shape, np.int8))[0] for _ in range(n)]
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


def test_the_supported_algorithms_are_ppo_and_a2c():
    assert supported_algorithms() == list(SB3_ALGOS)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", SB3_ALGOS)
def test_sb3_learns_acts_saves_and_loads_in_both_forms(tmp_path, name, form):
    env = FakePseudoLabelEnv(grid_size=4, action=form)
    agent = _make(name)
    seen = []

    def stop_after_first(agent_, record):
        seen.append(record)
        return False

    out = agent.learn(env, total_steps=64, callback=stop_after_first)
    assert len(seen) == 1 and out["updates"] == len(agent.history) == 1   # the callback stopped it
    assert agent.model.action_space == env.action_space
    batch = _batch(FakePseudoLabelEnv(grid_size=4, action=form), 6, seed=3)
    act = agent.act(batch)
    assert act.shape == (6, 16) and act.dtype == np.int8
    assert all(env.action_space.contains(a) for a in act)
    np.testing.assert_array_equal(agent.act({k: v[2] for k, v in batch.items()}), act[2])
    loaded = agents.load(agent.save(tmp_path / "saved"))
    assert loaded.name == name and loaded.history == agent.history
    assert loaded.counters() == agent.counters() == {"env_steps": 8, "updates": 1}
    np.testing.assert_array_equal(loaded.act(batch), act)
    np.testing.assert_array_equal(loaded.act(batch, deterministic=False).shape, act.shape)


def test_construct_actions_use_every_choice():
    """The construct head has 4 choices per cell (not a 0/1 selection squeezed into it)."""
    env = FakePseudoLabelEnv(grid_size=4, action="construct")
    agent = _make("sb3:ppo")
    agent.learn(env, total_steps=8)
    batch = _batch(FakePseudoLabelEnv(grid_size=4, action="construct"), 16)
    assert set(np.unique(agent.act(batch, deterministic=False))) == {0, 1, 2, 3}


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "dqn"])
def test_algorithms_that_cannot_act_in_the_env_are_refused_when_made(algo):
    with pytest.raises(ValueError, match=f"sb3:{algo} acts in .* only.*sb3:a2c, sb3:ppo"):
        agents.make(f"sb3:{algo}")
    with pytest.raises(ValueError, match="sb3:a2c, sb3:ppo"):
        SB3Agent.check_action_space(f"sb3:{algo}", {}, spaces.MultiBinary(16))
    with pytest.raises(KeyError, match="sb3:a2c, sb3:ppo"):
        agents.make("sb3:nope")


def test_options_are_checked_without_building():
    SB3Agent.check_options("sb3:ppo", {"n_steps": 8, "batch_size": 8, "features_dim": 16})
    with pytest.raises(TypeError, match="n_step"):
        SB3Agent.check_options("sb3:ppo", {"n_step": 8})
    with pytest.raises(TypeError, match="batch_size"):    # A2C has no minibatches
        SB3Agent.check_options("sb3:a2c", {"batch_size": 8})


class Resets(gym.Wrapper):
    """Counts resets and keeps the observation the env stands at."""

    def __init__(self, env):
        super().__init__(env)
        self.resets = 0

    def reset(self, **kwargs):
        self.resets += 1
        self.obs, info = self.env.reset(**kwargs)
        return self.obs, info

    def step(self, action):
        out = self.env.step(action)
        self.obs = out[0]
        return out


def _params(agent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.model.policy.parameters()]


def test_continue_from_goes_on_without_reset_and_resumes_exactly(tmp_path):
    """What a run does per chunk: continue_from the env's state, learn; a resumed run restores
    the env, the saved agent and the global RNGs and takes the same steps."""
    env = Resets(FakePseudoLabelEnv(grid_size=4, action="construct", episode_steps=100))
    env.reset(seed=0)
    agent = _make("sb3:ppo", n_epochs=2)
    agent.continue_from(env, env.obs, {"env_steps": 0, "updates": 0})
    agent.learn(env, total_steps=16)
    assert env.resets == 1 and agent.counters() == {"env_steps": 16, "updates": 2}
    saved, counters = agent.save(tmp_path / "chunk1"), agent.counters()
    env_copy, rng = copy.deepcopy(env), rng_state()

    agent.continue_from(env, env.obs, counters)
    agent.learn(env, total_steps=16)
    assert env.resets == 1     # still the one reset of the start
    want = (_params(agent), agent.history, agent.counters())

    set_rng_state(rng)
    resumed = agents.load(saved)
    set_rng_state(rng)         # loading a model reseeds SB3; a run restores its RNGs after it
    resumed.continue_from(env_copy, env_copy.obs, counters)
    resumed.learn(env_copy, total_steps=16)
    assert env_copy.resets == 1
    assert resumed.history == want[1] and resumed.counters() == want[2]
    assert all(torch.equal(a, b) for a, b in zip(_params(resumed), want[0]))


def test_learn_writes_its_records_and_sb3_losses_to_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = SummaryWriter(str(tmp_path / "tb"))
    _make("sb3:ppo").learn(FakePseudoLabelEnv(grid_size=4, action="construct"), 16, writer=writer)
    writer.close()
    tags = set(EventAccumulator(str(tmp_path / "tb")).Reload().Tags()["scalars"])
    assert {"agent/mean_reward", "agent/coverage", "agent/train/policy_gradient_loss",
            "agent/train/value_loss", "agent/train/entropy_loss"} <= tags, tags
    assert not any(t.startswith("agent/time/") for t in tags)


def test_act_before_learning_says_what_to_do():
    with pytest.raises(RuntimeError, match="call learn"):
        agents.make("sb3:ppo").act(_batch(FakePseudoLabelEnv(grid_size=4), 1))
