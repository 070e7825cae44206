"""The l2l selector: the update rule's maths, the network, learning on the fake env, save/load."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from agents.l2l import L2LAgent, L2LConfig, ObsLayout, SelectorNet
from agents.l2l.ppo import bernoulli_entropy, bernoulli_logp, compute_gae, mix_advantages, ppo_loss
from fake_env import FakePseudoLabelEnv

torch.set_num_threads(1)
FAST = dict(n_steps=32, minibatch_size=16, hidden=16, dilations=(1, 2), learning_rate=3e-3)


def test_bernoulli_logp_and_entropy_match_torch():
    logits = torch.linspace(-4, 4, 9).reshape(3, 3)
    actions = torch.tensor([[0.0, 1, 1], [1, 0, 1], [0, 0, 1]])
    d = torch.distributions.Bernoulli(logits=logits)
    torch.testing.assert_close(bernoulli_logp(logits, actions), d.log_prob(actions))
    torch.testing.assert_close(bernoulli_entropy(logits), d.entropy())


def test_gae_by_hand():
    rewards = np.array([[1.0], [0.0], [2.0]])
    values = np.array([[0.5], [1.0], [0.0]])
    dones = np.array([[0.0], [1.0], [0.0]])
    adv, ret = compute_gae(rewards, values, dones, last_values=np.array([4.0]), gamma=0.5, lam=0.5)
    d2 = 2.0 + 0.5 * 4.0 - 0.0          # last step bootstraps from last_values
    d1 = 0.0 - 1.0                      # episode ended at t=1: no bootstrap, no flow from t=2
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.25 * d1, d1, d2], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + values, rtol=1e-6)


def test_mix_advantages():
    adv = np.array([[1.0], [3.0]])
    cell = np.array([[[0.0, 2.0]], [[4.0, 6.0]]])
    valid = np.ones((2, 1))
    scalar_only = mix_advantages(adv, None, valid, 0.5, normalise=True)
    np.testing.assert_allclose(scalar_only[:, 0, 0], [-1.0, 1.0], atol=1e-6)
    cell_only = mix_advantages(adv, cell, valid, 1.0, normalise=True)
    np.testing.assert_allclose(cell_only.ravel(), (cell.ravel() - 3.0) / np.sqrt(5.0), atol=1e-6)
    raw = mix_advantages(adv, cell, valid, 0.25, normalise=False)
    np.testing.assert_allclose(raw, 0.75 * adv[..., None] + 0.25 * cell, atol=1e-6)
    # an invalid step neither counts in the statistics nor changes the valid ones
    masked = mix_advantages(np.array([[1.0], [3.0], [100.0]]), None, np.array([[1.0], [1.0], [0.0]]), 0, True)
    np.testing.assert_allclose(masked[:2, 0, 0], [-1.0, 1.0], atol=1e-6)


def test_each_cell_ratio_is_clipped_on_its_own():
    cfg = L2LConfig(clip_coef=0.2, ent_coef=0.0, vf_coef=0.0)
    actions = torch.ones(1, 3)
    logits = torch.zeros(1, 3, requires_grad=True)               # pi_new(a=1) = 0.5 per cell
    old_p = torch.tensor([[0.5, 0.25, 0.5]])                     # cell 1: ratio 2 (outside the clip)
    old_logp = torch.log(old_p)
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    loss, stats = ppo_loss(logits, torch.zeros(1), torch.zeros(1, 3), actions, old_logp, adv, torch.zeros(1),
                           None, torch.ones(1), cfg)
    # per cell: min(r A, clip(r) A): cell0 r=1 -> 1; cell1 r=2 clipped to 1.2 -> 1.2; cell2 r=1 -> -2
    assert loss.item() == pytest.approx(-(1.0 + 1.2 - 2.0) / 3, abs=1e-6)
    loss.backward()
    g = logits.grad[0]
    assert g[1].item() == 0.0                     # the clipped cell gets no gradient ...
    assert g[0].item() != 0.0 and g[2].item() != 0.0   # ... the others still do
    assert stats["clip_frac"] == pytest.approx(1 / 3)
    # a joint ratio would be the product 1 * 2 * 1 = 2 and clip every cell's gradient


def _batch(env: gym.Env, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    env.reset(seed=seed)
    obs = [env.step(env.action_space.sample() * 0)[0] for _ in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def test_selector_net_is_grid_size_independent():
    for g in (8, 5):
        batch = _batch(FakePseudoLabelEnv(grid_size=g, text_dim=6, include_image=True), 3)
        layout = ObsLayout.from_obs(batch)
        assert layout.map_keys == ("prior", "student", "teacher", "uncertainty", "image")
        assert layout.in_channels == 7 and layout.cond_dim == 6 + 2
        net = SelectorNet(layout, hidden=8, dilations=(1, 2), init_select_prob=0.3)
        logits, value, cell_value = net(*layout.tensors(batch, "cpu"))
        assert logits.shape == (3, g * g) and value.shape == (3,) and cell_value.shape == (3, g * g)
        assert torch.sigmoid(logits).mean().item() == pytest.approx(0.3, abs=0.05)


def test_act_is_probability_above_half_and_batched():
    env = FakePseudoLabelEnv()
    agent = agents.make("l2l", **FAST)
    batch = _batch(env, 4)
    probs = agent.probabilities(batch)
    assert probs.shape == (4, 64) and probs.dtype == np.float32
    act = agent.act(batch)
    assert act.dtype == np.int8 and act.shape == (4, 64)
    np.testing.assert_array_equal(act, (probs > 0.5).astype(np.int8))
    single = {k: v[1] for k, v in batch.items()}
    np.testing.assert_array_equal(agent.act(single), act[1])
    sampled = agent.act(batch, deterministic=False)
    assert set(np.unique(sampled)) <= {0, 1} and 0.3 < sampled.mean() < 0.7


def test_l2l_learns_from_reward_on_fake_env():
    agent = agents.make("l2l", seed=0, **FAST)
    out = agent.learn(FakePseudoLabelEnv(grid_size=8), total_steps=1024)
    hist = agent.history
    assert out["updates"] == len(hist) == 32 and hist[-1]["env_steps"] == 1024
    first = np.mean([h["mean_reward"] for h in hist[:6]])
    last = np.mean([h["mean_reward"] for h in hist[-6:]])
    assert last > first + 0.2, (first, last)
    # the selection is better than chance: its pseudo-label precision rose too
    assert np.mean([h["pl_precision"] for h in hist[-6:]]) > np.mean([h["pl_precision"] for h in hist[:6]])
    assert all(np.isfinite(h["policy_loss"]) and np.isfinite(h["value_loss"]) for h in hist)


def test_learning_is_seeded():
    runs = []
    for _ in range(2):
        agent = agents.make("l2l", seed=3, **FAST)
        agent.learn(FakePseudoLabelEnv(), total_steps=64)
        runs.append([(h["mean_reward"], h["policy_loss"]) for h in agent.history])
    assert runs[0] == runs[1]


def test_callback_can_stop_learning_and_tensorboard_writer_gets_scalars():
    seen = []

    class Writer:
        def add_scalar(self, tag, value, step):
            seen.append((tag, step))

    agent = agents.make("l2l", **FAST)
    agent.learn(FakePseudoLabelEnv(), 10_000, callback=lambda a, rec: rec["update"] < 2, writer=Writer())
    assert len(agent.history) == 2
    assert agent.last_obs is not None and agent.last_obs["prior"].shape == (1, 1, 8, 8)
    assert ("l2l/mean_reward", 32) in seen and ("l2l/mean_reward", 64) in seen


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_learns_on_a_vector_env(mode):
    env = gym.vector.SyncVectorEnv([lambda: FakePseudoLabelEnv(episode_steps=5) for _ in range(2)],
                                   autoreset_mode=mode)
    agent = agents.make("l2l", **{**FAST, "n_steps": 16})
    agent.learn(env, total_steps=64)
    assert [h["env_steps"] for h in agent.history] == [32, 64]
    assert all(np.isfinite(h["mean_reward"]) and 0.0 <= h["coverage"] <= 1.0 for h in agent.history)


def test_save_load_round_trip_and_continue(tmp_path):
    env = FakePseudoLabelEnv()
    agent = agents.make("l2l", **FAST)
    agent.learn(env, total_steps=64)
    batch = _batch(FakePseudoLabelEnv(), 5, seed=7)
    agent.save(tmp_path / "sel")
    loaded = agents.load(tmp_path / "sel")
    assert isinstance(loaded, L2LAgent) and loaded.config == agent.config
    assert loaded.history == agent.history
    np.testing.assert_array_equal(loaded.probabilities(batch), agent.probabilities(batch))
    np.testing.assert_array_equal(loaded.act(batch), agent.act(batch))
    np.testing.assert_array_equal(loaded.act(batch, deterministic=False), agent.act(batch, deterministic=False))
    loaded.learn(env, total_steps=32)
    assert len(loaded.history) == len(agent.history) + 1


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="cell_adv_coef"):
        L2LConfig(cell_adv_coef=2.0)
    with pytest.raises(TypeError, match="unknown parameter.*'lr'"):
        agents.make("l2l", lr=0.1)
    with pytest.raises(ValueError, match="no network yet"):
        agents.make("l2l").save("unused")
