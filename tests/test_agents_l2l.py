"""The l2l constructor: the update rule's maths, the network, learning on the fake env, save/load."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from agents.l2l import L2LAgent, L2LConfig, ObsLayout, SelectorNet
from agents.l2l.ppo import (all_action_loss, categorical_entropy, categorical_logp, compute_gae,
                            mix_advantages, ppo_loss, sample_choices)
from fake_env import FakePseudoLabelEnv

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(n_steps=32, minibatch_size=16, hidden=16, dilations=(1, 2), learning_rate=3e-3)
PPO_SELECT = dict(action_form="select", explore=True, pg_coef=1.0)
"""The selection ablation learned by PPO on sampled actions (the fake env's default form)."""


# --------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("k", [2, 4])
def test_categorical_logp_and_entropy_match_torch(k):
    logits = torch.linspace(-4, 4, 2 * 3 * k).reshape(2, 3, k) * torch.tensor([1.0, -0.5])[:, None, None]
    actions = torch.tensor([[0, 1, k - 1], [k - 1, 0, 1]])
    d = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(categorical_logp(logits, actions), d.log_prob(actions))
    torch.testing.assert_close(categorical_entropy(logits), d.entropy())
    # int8 actions (what the rollout stores) give the same
    torch.testing.assert_close(categorical_logp(logits, actions.to(torch.int8)), d.log_prob(actions))


def test_sample_choices_follows_the_probabilities_and_the_generator():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(4, 1000, 4).clone()
    a = sample_choices(logits, torch.Generator().manual_seed(0))
    assert a.shape == (4, 1000) and a.dtype == torch.int64
    freq = torch.bincount(a.ravel(), minlength=4).float() / a.numel()
    torch.testing.assert_close(freq, probs, atol=0.02, rtol=0)
    again = sample_choices(logits, torch.Generator().manual_seed(0))
    assert torch.equal(a, again)


def test_all_action_loss_is_the_cross_entropy_to_the_boltzmann_policy_of_the_scores():
    logits = torch.tensor([[[0.0, 0.0], [1.0, -1.0]],
                           [[2.0, 0.0], [0.0, 0.0]]])
    scores = torch.tensor([[[1.0, -1.0], [0.0, 2.0]],
                           [[5.0, 5.0], [5.0, 5.0]]])

    def cross_entropy(t: int, temperature: float) -> torch.Tensor:
        target = torch.softmax(scores[t] / temperature, -1)
        return -(target * torch.log_softmax(logits[t], -1)).sum(-1).mean()

    loss = all_action_loss(logits, scores, torch.tensor([1.0, 0.0]), 0.5)
    torch.testing.assert_close(loss, cross_entropy(0, 0.5))       # the unscored step does not count
    both = all_action_loss(logits, scores, torch.tensor([1.0, 1.0]), 2.0)
    torch.testing.assert_close(both, (cross_entropy(0, 2.0) + cross_entropy(1, 2.0)) / 2)
    assert all_action_loss(logits, scores, torch.zeros(2), 1.0).item() == 0.0
    # its minimum over the policy is the Boltzmann policy itself (cross-entropy = its entropy)
    target = torch.softmax(scores / 0.5, -1)
    at_target = all_action_loss(target.log(), scores, torch.ones(2), 0.5)
    entropy = categorical_entropy(target.log()).mean(dim=1).mean()
    torch.testing.assert_close(at_target, entropy)
    assert loss.item() > at_target.item() - 1e-6


def test_all_action_gradient_moves_probability_to_the_higher_scoring_choice():
    logits = torch.zeros(1, 3, 4, requires_grad=True)       # uniform over 4 choices, 3 cells
    scores = torch.tensor([[[0.0, -1.0, 2.0, 0.5],           # cell 0: foreground is best
                            [0.0, 1.0, -2.0, 0.2],           # cell 1: background
                            [0.0, -1.0, -1.0, -0.5]]])       # cell 2: ignore (0) beats the rest
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        all_action_loss(logits, scores, torch.ones(1), 0.1).backward()
        opt.step()
    best = torch.softmax(logits, -1).argmax(-1)
    assert best.tolist() == [[2, 1, 0]]
    assert (torch.softmax(logits, -1).max(-1).values > 0.8).all()
    # an unscored step gets no gradient at all
    frozen = torch.zeros(1, 3, 4, requires_grad=True)
    all_action_loss(frozen, scores, torch.zeros(1), 0.1).backward()
    assert frozen.grad is not None and not frozen.grad.any()


# --------------------------------------------------------------------------- advantages
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
    actions = torch.ones(1, 3, dtype=torch.int64)
    logits = torch.zeros(1, 3, 2, requires_grad=True)            # pi_new(a=1) = 0.5 per cell
    old_p = torch.tensor([[0.5, 0.25, 0.5]])                     # cell 1: ratio 2 (outside the clip)
    old_logp = torch.log(old_p)
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    loss, stats = ppo_loss(logits, torch.zeros(1), torch.zeros(1, 3), actions, old_logp, adv, torch.zeros(1),
                           None, torch.ones(1), cfg)
    # per cell: min(r A, clip(r) A): cell0 r=1 -> 1; cell1 r=2 clipped to 1.2 -> 1.2; cell2 r=1 -> -2
    assert loss.item() == pytest.approx(-(1.0 + 1.2 - 2.0) / 3, abs=1e-6)
    loss.backward()
    g = logits.grad[0]
    assert not g[1].any()                           # the clipped cell gets no gradient ...
    assert g[0].abs().sum() > 0 and g[2].abs().sum() > 0   # ... the others still do
    assert stats["clip_frac"] == pytest.approx(1 / 3)
    # a joint ratio would be the product 1 * 2 * 1 = 2 and clip every cell's gradient


# --------------------------------------------------------------------------- network and acting
def _batch(env: gym.Env, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    env.reset(seed=seed)
    obs = [env.step(np.zeros(env.action_space.shape, np.int8))[0] for _ in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def _scored_batch(n: int, seed: int, grid: int = 8) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` observations of the construct fake env and the scores of every choice on them."""
    env = FakePseudoLabelEnv(grid_size=grid, action="construct")
    obs, _ = env.reset(seed=seed)
    seen, scores = [], []
    for _ in range(n):
        nxt, _, _, trunc, info = env.step(np.zeros(grid * grid, np.int8))
        seen.append(obs)
        scores.append(info["cell_scores"])
        obs = env.reset()[0] if trunc else nxt
    return {k: np.stack([o[k] for o in seen]) for k in seen[0]}, np.stack(scores)


def _expected_score(agent: L2LAgent, batch: dict[str, np.ndarray], scores: np.ndarray) -> float:
    """The policy's expected reward on scored observations: mean over steps of
    ``sum_{c,k} pi(k | s, c) score_{c,k}``."""
    return float((agent.probabilities(batch) * scores).sum(axis=(1, 2)).mean())


def test_fake_env_construct_scores_are_its_reward():
    env = FakePseudoLabelEnv(action="construct", score_every=2)
    assert env.action_space == gym.spaces.MultiDiscrete([4] * 64)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    flags = []
    for _ in range(6):
        codes = rng.integers(0, 4, 64)
        _, reward, _, _, info = env.step(codes)
        flags.append(info["scored"])
        if info["scored"]:
            assert info["cell_scores"].shape == (64, 4) and not info["cell_scores"][:, 0].any()
            np.testing.assert_allclose(info["cell_rewards"], info["cell_scores"][np.arange(64), codes],
                                       atol=1e-7)
            assert reward == pytest.approx(float(info["cell_rewards"].sum()), abs=1e-6)
        else:
            assert "cell_scores" not in info and reward == 0.0
    assert flags == [False, True] * 3
    with pytest.raises(ValueError, match="codes 0..3"):
        env.step(np.full(64, 4))


@pytest.mark.parametrize("init_probs", [(0.7, 0.3), (0.1, 0.1, 0.1, 0.7)])
def test_selector_net_is_grid_size_independent(init_probs):
    k = len(init_probs)
    for g in (8, 5):
        batch = _batch(FakePseudoLabelEnv(grid_size=g, text_dim=6, include_image=True), 3)
        layout = ObsLayout.from_obs(batch)
        assert layout.map_keys == ("prior", "student", "teacher", "uncertainty", "image")
        assert layout.in_channels == 7 and layout.cond_dim == 6 + 2
        net = SelectorNet(layout, hidden=8, dilations=(1, 2), init_probs=init_probs)
        logits, value, cell_value = net(*layout.tensors(batch, "cpu"))
        assert logits.shape == (3, g * g, k) and value.shape == (3,) and cell_value.shape == (3, g * g)
        mean = torch.softmax(logits, -1).mean(dim=(0, 1))
        torch.testing.assert_close(mean, torch.tensor(init_probs), atol=0.05, rtol=0)


def test_selector_net_rejects_bad_init_probs():
    layout = ObsLayout.from_obs(_batch(FakePseudoLabelEnv(), 1))
    for bad in [(1.0,), (0.5, 0.6), (0.0, 1.0), (-0.1, 0.6, 0.5)]:
        with pytest.raises(ValueError, match="init_probs"):
            SelectorNet(layout, init_probs=bad)


def test_config_init_probs_follow_the_action_form():
    assert L2LConfig().n_choices == 4 and L2LConfig(**PPO_SELECT).n_choices == 2
    np.testing.assert_allclose(L2LConfig(init_teacher_prob=0.4).init_probs, (0.2, 0.2, 0.2, 0.4))
    np.testing.assert_allclose(L2LConfig(**PPO_SELECT, init_select_prob=0.3).init_probs,
                               (0.7, 0.3))


def test_construct_act_is_the_most_probable_choice_and_batched():
    env = FakePseudoLabelEnv(action="construct")
    agent = agents.make("l2l", **FAST)
    batch = _batch(env, 4)
    probs = agent.probabilities(batch)
    assert probs.shape == (4, 64, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    act = agent.act(batch)
    assert act.dtype == np.int8 and act.shape == (4, 64)
    np.testing.assert_array_equal(act, probs.argmax(-1))
    assert (act == 3).all()                              # the untrained constructor copies the teacher
    assert agent.logits(batch).shape == (4, 64, 4)
    single = {k: v[1] for k, v in batch.items()}
    np.testing.assert_array_equal(agent.act(single), act[1])
    sampled = agent.act(batch, deterministic=False)
    freq = np.bincount(sampled.ravel(), minlength=4) / sampled.size
    np.testing.assert_allclose(freq, [0.1, 0.1, 0.1, 0.7], atol=0.06)
    assert all(env.action_space.contains(a) for a in sampled)


def test_select_act_is_keep_probability_above_half():
    env = FakePseudoLabelEnv()
    agent = agents.make("l2l", **PPO_SELECT, **FAST)
    batch = _batch(env, 4)
    probs = agent.probabilities(batch)
    assert probs.shape == (4, 64, 2)
    act = agent.act(batch)
    np.testing.assert_array_equal(act, (probs[..., 1] > probs[..., 0]).astype(np.int8))
    sampled = agent.act(batch, deterministic=False)
    assert set(np.unique(sampled)) <= {0, 1} and 0.3 < sampled.mean() < 0.7


# --------------------------------------------------------------------------- learning
def test_l2l_ppo_learns_the_selection_from_reward_on_fake_env():
    agent = agents.make("l2l", seed=0, **PPO_SELECT, **FAST)
    out = agent.learn(FakePseudoLabelEnv(grid_size=8), total_steps=1024)
    hist = agent.history
    assert out["updates"] == len(hist) == 32 and hist[-1]["env_steps"] == 1024
    first = np.mean([h["mean_reward"] for h in hist[:6]])
    last = np.mean([h["mean_reward"] for h in hist[-6:]])
    assert last > first + 0.2, (first, last)
    # the selection is better than chance: its pseudo-label precision rose too
    assert np.mean([h["pl_precision"] for h in hist[-6:]]) > np.mean([h["pl_precision"] for h in hist[:6]])
    assert all(np.isfinite(h["policy_loss"]) and np.isfinite(h["value_loss"]) for h in hist)


@pytest.mark.parametrize("seed", [0, 1])
def test_l2l_all_action_learning_raises_the_expected_score(seed):
    batch, scores = _scored_batch(48, seed=100 + seed)     # held-out scenes, never trained on
    agent = agents.make("l2l", seed=seed, **FAST)
    before = _expected_score(agent, batch, scores)
    agent.learn(FakePseudoLabelEnv(grid_size=8, action="construct"), total_steps=128)
    after = _expected_score(agent, batch, scores)
    assert after > before + 0.2, (before, after)
    hist = agent.history
    assert len(hist) == 4 and all(h["scored_steps"] == 32 for h in hist)
    assert all(np.isfinite(h["all_action_loss"]) and "policy_loss" not in h for h in hist)


def test_all_action_learning_uses_scored_steps_only():
    # score_every=64 > n_steps: no rollout holds a scored step, so nothing may change
    agent = agents.make("l2l", seed=0, **FAST)
    env = FakePseudoLabelEnv(grid_size=8, action="construct", score_every=64, episode_steps=1000)
    batch = _batch(FakePseudoLabelEnv(action="construct"), 3)
    before = agent.logits(batch)
    agent.learn(env, total_steps=32)
    assert agent.history[-1]["scored_steps"] == 0
    np.testing.assert_array_equal(agent.logits(batch), before)
    # with every other step scored, half the steps count
    agent.learn(FakePseudoLabelEnv(grid_size=8, action="construct", score_every=2), total_steps=32)
    assert agent.history[-1]["scored_steps"] == 16
    assert not np.array_equal(agent.logits(batch), before)


def test_greedy_rollouts_do_not_sample():
    # explore=False acts by argmax: the untrained constructor's rollout is the teacher everywhere
    seen = []

    class Spy(gym.Wrapper):
        def step(self, action):
            seen.append(np.array(action))
            return self.env.step(action)

    agent = agents.make("l2l", seed=0, **{**FAST, "learning_rate": 1e-9})
    agent.learn(Spy(FakePseudoLabelEnv(action="construct")), total_steps=32)
    assert len(seen) == 32 and all((a == 3).all() for a in seen)
    explorer = agents.make("l2l", seed=0, explore=True, pg_coef=1.0, **FAST)
    seen.clear()
    explorer.learn(Spy(FakePseudoLabelEnv(action="construct")), total_steps=32)
    assert len({int(v) for a in seen for v in a}) == 4


@pytest.mark.parametrize("kw", [{}, PPO_SELECT])
def test_learning_is_seeded(kw):
    form = kw.get("action_form", "construct")
    runs = []
    for _ in range(2):
        agent = agents.make("l2l", seed=3, **kw, **FAST)
        agent.learn(FakePseudoLabelEnv(action=form), total_steps=64)
        runs.append([(h["mean_reward"], h.get("policy_loss"), h.get("all_action_loss"))
                     for h in agent.history])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kw", [{}, PPO_SELECT])
def test_stepping_the_learner_from_outside_is_learn(kw):
    """What a run's loop does (it steps the env and drives ``agent.stepper``) learns exactly
    what ``learn`` does from the same state, across episode ends and updates."""
    form = kw.get("action_form", "construct")
    runs = []
    for outside in (False, True):
        agent = agents.make("l2l", seed=3, **kw, **FAST)
        env = FakePseudoLabelEnv(action=form, episode_steps=20)
        obs, _ = env.reset(seed=5)
        counters = {"env_steps": 0, "updates": 0}
        if outside:
            stepper = agent.stepper(env, obs, counters)
            for _ in range(64):
                stepper.observe(*env.step(stepper.action()))
        else:
            agent.continue_from(env, obs, counters)
            agent.learn(env, 64)
        history = [{k: v for k, v in h.items() if k != "time_s"} for h in agent.history]
        runs.append((history, [p.detach().clone() for p in agent.net.parameters()],
                     agent.counters()))
    assert len(runs[0][0]) == 2 and repr(runs[0][0]) == repr(runs[1][0])  # NaN-safe
    assert runs[0][2] == runs[1][2] == {"env_steps": 64, "updates": 2}
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_heuristic_steps_greedily_and_resets_ended_episodes():
    resets = []

    class Counting(FakePseudoLabelEnv):
        def reset(self, *, seed=None, options=None):
            resets.append(seed)
            return super().reset(seed=seed, options=options)

    agent = agents.make("threshold")
    env = Counting(action="construct", episode_steps=3)
    obs, _ = env.reset(seed=0)
    stepper = agent.stepper(env, obs, {"env_steps": 0, "updates": 0})
    for _ in range(7):
        action = stepper.action()
        np.testing.assert_array_equal(action, agent.act(stepper.obs, deterministic=True))
        stepper.observe(*env.step(action))
    assert resets == [0, None, None]  # the start, then after steps 3 and 6


def test_agent_refuses_an_env_of_the_other_action_form():
    with pytest.raises(ValueError, match="action_form='select'"):
        agents.make("l2l", **FAST).learn(FakePseudoLabelEnv(action="select"), 32)
    with pytest.raises(ValueError, match="action_form='construct'"):
        agents.make("l2l", **PPO_SELECT, **FAST).learn(FakePseudoLabelEnv(action="construct"), 32)


def test_callback_can_stop_learning_and_tensorboard_writer_gets_scalars():
    seen = []

    class Writer:
        def add_scalar(self, tag, value, step):
            seen.append((tag, step))

    agent = agents.make("l2l", **FAST)
    agent.learn(FakePseudoLabelEnv(action="construct"), 10_000,
                callback=lambda a, rec: rec["update"] < 2, writer=Writer())
    assert len(agent.history) == 2
    assert agent.last_obs is not None and agent.last_obs["prior"].shape == (1, 1, 8, 8)
    assert ("l2l/mean_reward", 32) in seen and ("l2l/mean_reward", 64) in seen
    assert ("l2l/all_action_loss", 64) in seen


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
@pytest.mark.parametrize("form", ["select", "construct"])
def test_learns_on_a_vector_env(mode, form):
    env = gym.vector.SyncVectorEnv(
        [lambda: FakePseudoLabelEnv(episode_steps=5, action=form, score_every=2) for _ in range(2)],
        autoreset_mode=mode)
    kw = PPO_SELECT if form == "select" else {}
    agent = agents.make("l2l", **{**FAST, "n_steps": 16}, **kw)
    agent.learn(env, total_steps=64)
    assert [h["env_steps"] for h in agent.history] == [32, 64]
    assert all(np.isfinite(h["mean_reward"]) and 0.0 <= h["coverage"] <= 1.0 for h in agent.history)
    if form == "construct":
        assert all(0 < h["scored_steps"] < 32 for h in agent.history)
        assert all(np.isfinite(h["all_action_loss"]) for h in agent.history)


@pytest.mark.parametrize("kw", [{}, PPO_SELECT])
def test_save_load_round_trip_and_continue(tmp_path, kw):
    form = kw.get("action_form", "construct")
    env = FakePseudoLabelEnv(action=form)
    agent = agents.make("l2l", **kw, **FAST)
    agent.learn(env, total_steps=64)
    batch = _batch(FakePseudoLabelEnv(action=form), 5, seed=7)
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
    with pytest.raises(ValueError, match="pg_coef"):
        L2LConfig(pg_coef=1.0)                     # PPO needs sampled actions (explore=True)
    with pytest.raises(ValueError, match="action_form"):
        L2LConfig(action_form="weights")
    with pytest.raises(ValueError, match="init_teacher_prob"):
        L2LConfig(init_teacher_prob=1.0)
    with pytest.raises(TypeError, match="unknown parameter.*'lr'"):
        agents.make("l2l", lr=0.1)
    with pytest.raises(ValueError, match="no network yet"):
        agents.make("l2l").save("unused")
