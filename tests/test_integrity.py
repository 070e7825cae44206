"""Ground-truth integrity: no unlabeled mask reaches a reward, an observation or training unless an
oracle is asked for by name, and then ``info["oracle"]`` says so.

For every non-oracle reward and every action form (``construct``, and ``select`` with each label
source) a run with ``diagnostics=False`` decodes no unlabeled mask at all, and its trajectory
(observations, rewards, infos less the ground-truth diagnostics) is identical to the run with
diagnostics on: the diagnostics are only ever reported, never used.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import agents
import l2l_env
from env_fixtures import tiny_env_kwargs
from l2l_env import labels as L
from l2l_env.bank import GroundTruthVault
from l2l_env.data.types import RefRecord
from l2l_env.env import PseudoLabelEnv
from l2l_env.rewards import REWARDS

pytestmark = pytest.mark.usefixtures("one_thread")
N = 64
HONEST_REWARDS = sorted(n for n, cls in REWARDS.items() if not cls.uses_ground_truth)
FORMS = [("construct", "teacher"), ("select", "teacher"), ("select", "prior"), ("select", "fused")]


def _rollout(env, steps: int, seed: int = 7) -> list:
    obs, _ = env.reset(seed=seed)
    space = env.action_space
    high = int(space.nvec.max()) if isinstance(space, gym.spaces.MultiDiscrete) else 2
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(rng.integers(0, high, N))
        out.append((obs, reward, term, trunc, info))
        if trunc:
            obs, _ = env.reset()
            out.append(obs)
    return out


def guarded_vault(self, row):
    raise AssertionError(f"the ground-truth vault was opened (row {row})")


def guard_unlabeled_truth(l2l_cache, monkeypatch) -> list:
    """From here on, reading any unlabeled sample's mask fails the test (build the reference run
    and the caches first: they may read masks)."""
    unlabeled = set(PseudoLabelEnv(**tiny_env_kwargs(l2l_cache)).label_split.unlabeled)
    original = RefRecord.load_mask
    reads = []

    def guarded(self):
        if self.image_id in unlabeled:
            reads.append(self.image_id)
            raise AssertionError(f"unlabeled mask of image {self.image_id} was read")
        return original(self)

    vault = guarded_vault

    def pictures(self, row):
        raise AssertionError(f"diagnostic_mask({row}) was called during the run")

    monkeypatch.setattr(RefRecord, "load_mask", guarded)
    monkeypatch.setattr(GroundTruthVault, "mask", vault)
    monkeypatch.setattr(PseudoLabelEnv, "diagnostic_mask", pictures)
    return reads


@pytest.mark.parametrize("form, source", FORMS, ids=[f"{f}-{s}" for f, s in FORMS])
@pytest.mark.parametrize("reward", HONEST_REWARDS)
def test_unlabeled_ground_truth_never_reaches_rewards_or_training(l2l_cache, monkeypatch, reward,
                                                                  form, source):
    kwargs = tiny_env_kwargs(l2l_cache, reward=reward, action=form, label_source=source,
                             episode_steps=10)
    reference_env = gym.make(l2l_env.ENV_ID, **kwargs)
    reference = _rollout(reference_env, 17)
    assert any("pl_precision" in t[4] for t in reference if isinstance(t, tuple))

    reads = guard_unlabeled_truth(l2l_cache, monkeypatch)
    env = gym.make(l2l_env.ENV_ID, **{**kwargs, "diagnostics": False})
    assert not env.unwrapped.data.vault.available
    blind = _rollout(env, 17)
    assert reads == []
    assert sum(isinstance(t, tuple) and t[4]["updated"] for t in blind) == 2   # it trained twice
    assert len(reference) == len(blind)
    for a, b in zip(reference, blind):
        if isinstance(a, tuple):
            assert not any(k.startswith("pl_") for k in b[4])
            assert b[4]["oracle"] is False and a[4]["oracle"] is False
            info_a = {k: v for k, v in a[4].items() if not k.startswith("pl_")}
            assert data_equivalence(a[:4], b[:4], exact=True)
            assert data_equivalence(info_a, b[4], exact=True)
        else:
            assert data_equivalence(a, b, exact=True)


def test_the_guard_catches_a_read(l2l_cache, monkeypatch):
    opened = GroundTruthVault.mask
    reads = guard_unlabeled_truth(l2l_cache, monkeypatch)
    monkeypatch.setattr(GroundTruthVault, "mask", opened)  # masks are decoded when a step opens it
    seen = PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, diagnostics=True, calibration_every=0,
                                            reward="agreement"))
    seen.reset(seed=0)
    with pytest.raises(AssertionError, match="unlabeled mask of image"):
        seen.step(np.full(N, L.TEACHER, np.int8))   # diagnostics decode the step's mask
    assert reads
    monkeypatch.setattr(GroundTruthVault, "mask", guarded_vault)
    env = PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, diagnostics=False))
    env.reset(seed=0)
    with pytest.raises(AssertionError, match="vault"):
        env.data.vault.mask(0)


def test_heldout_reward_reads_labeled_probe_masks_only(l2l_cache, monkeypatch):
    """Calibration steps are scored against labeled masks: allowed, and still no unlabeled read."""
    kwargs = tiny_env_kwargs(l2l_cache, diagnostics=False, calibration_every=2)
    PseudoLabelEnv(**kwargs)                       # build the caches before the guard
    guard_unlabeled_truth(l2l_cache, monkeypatch)
    env = gym.make(l2l_env.ENV_ID, **kwargs)
    env.reset(seed=0)
    infos = [env.step(np.full(N, L.TEACHER, np.int8))[4] for _ in range(8)]
    assert [i["scored"] for i in infos] == [False, True] * 4
    assert all(i["cell_scores"].shape == (N, 4) for i in infos if i["scored"])


# --------------------------------------------------------------------------- oracles
def test_oracle_reward_is_flagged_and_needs_ground_truth(l2l_cache):
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, reward="oracle"))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.full(N, L.TEACHER, np.int8))
    assert info["oracle"] is True and 0.0 <= reward <= 1.0
    assert env.unwrapped.uses_oracle
    blind = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, reward="oracle", diagnostics=False))
    blind.reset(seed=0)
    with pytest.raises(RuntimeError, match="ground-truth masks"):
        blind.step(np.full(N, L.TEACHER, np.int8))


@pytest.mark.parametrize("name", ["oracle-select", "oracle-construct"])
def test_oracle_agents_need_the_truth_observation(l2l_cache, name):
    assert agents.agent_class(name).needs_truth
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache))
    obs, _ = env.reset(seed=0)
    assert "truth" not in obs and not env.unwrapped.uses_oracle
    agent = agents.make(name)
    assert agent.needs_truth and not agent.is_learner
    with pytest.raises(ValueError, match="oracle_obs=True"):
        agent.act(obs)
    assert not any(agents.make(n).needs_truth for n in ("none", "all", "threshold", "prior",
                                                        "agreement", "fusion", "random", "l2l"))


@pytest.mark.parametrize("form", ["construct", "select"])
@pytest.mark.parametrize("name", ["oracle-select", "oracle-construct"])
def test_oracle_observation_is_the_truth_and_is_flagged(l2l_cache, name, form):
    kwargs = tiny_env_kwargs(l2l_cache, action=form, oracle_obs=True)
    env = gym.make(l2l_env.ENV_ID, **kwargs)
    plain = gym.make(l2l_env.ENV_ID, **{**kwargs, "oracle_obs": False})
    agent = agents.make(name, action_form=form)
    obs, _ = env.reset(seed=0)
    plain_obs, _ = plain.reset(seed=0)
    u = env.unwrapped
    assert env.observation_space.contains(obs) and obs["truth"].shape == (1, 8, 8)
    for _ in range(6):
        action = agent.act(obs)
        assert env.action_space.contains(action)
        if form == "select":
            assert set(np.unique(action)) <= {0, 1}
        teacher_right = (obs["teacher"][0] > 0.5) == (obs["truth"][0] > 0.5)
        if name == "oracle-select":           # the teacher's label exactly where it is right
            expected = np.where(teacher_right, 1 if form == "select" else L.TEACHER, 0)
            np.testing.assert_array_equal(action.reshape(8, 8), expected)
        else:    # the teacher where it is right, else the prior where it is right, else nothing
            prior_fg, truth_fg = obs["prior"][0] > 0.5, obs["truth"][0] > 0.5
            prior_ok = (prior_fg == truth_fg) & (obs["no_prior"][0] < 0.5)
            codes = np.select([teacher_right, prior_ok],
                              [L.TEACHER, np.where(prior_fg, L.FOREGROUND, L.BACKGROUND)], L.IGNORE)
            expected = (codes != L.IGNORE).astype(int) if form == "select" else codes
            np.testing.assert_array_equal(action.reshape(8, 8), expected)
            # no label the (cell-majority) truth contradicts
            assert truth_fg[codes == L.FOREGROUND].all() and not truth_fg[codes == L.BACKGROUND].any()
        nxt, reward, _, _, info = env.step(action)
        row = u.last_construction["row"]
        truth = L.cell_fraction(u.diagnostic_mask(row).astype(np.float32), 8)
        np.testing.assert_allclose(obs["truth"][0], truth, atol=1e-6)
        assert info["oracle"] is True
        # the truth key only adds to the observation: the rest of the run is the plain run
        plain_next, plain_reward, _, _, plain_info = plain.step(action)
        assert plain_info["oracle"] is False and reward == plain_reward
        assert data_equivalence({k: v for k, v in nxt.items() if k != "truth"}, plain_next, exact=True)
        obs = nxt


@pytest.mark.parametrize("form", ["construct", "select"])
def test_a_learner_ends_the_same_with_diagnostics_on_and_off(l2l_cache, form):
    """The ground-truth diagnostics in ``info`` never reach learning: the l2l agent (and the
    segmenter it drives) end with identical weights whether the env reports them or not."""
    options = {"n_steps": 8, "minibatch_size": 8, "hidden": 8, "action_form": form}
    if form == "select":
        options.update(explore=True, pg_coef=1.0)
    ends = []
    for diagnostics in (True, False):
        env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, action=form,
                                                         diagnostics=diagnostics))
        agent = agents.make("l2l", **options)
        agent.learn(env, total_steps=32)
        ends.append(({k: v.clone() for k, v in agent.net.state_dict().items()},
                     env.unwrapped.segmenter.state_dict()["model"]))
    (net_a, seg_a), (net_b, seg_b) = ends
    assert all(np.array_equal(net_a[k].numpy(), net_b[k].numpy()) for k in net_a)
    assert all(np.array_equal(seg_a[k].numpy(), seg_b[k].numpy()) for k in seg_a)
