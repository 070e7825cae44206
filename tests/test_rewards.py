"""Every reward of l2l_env.rewards on hand-made step contexts with exact values, and in the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import l2l_env
from env_fixtures import tiny_env_kwargs
from l2l_env import labels as L
from l2l_env.rewards import REWARDS, Reward, RewardResult, StepContext, make_reward

pytestmark = pytest.mark.usefixtures("one_thread")

# Four cells (a 2x2 grid over 4x4 pixels for the heldout reward), row-major.
SEL = np.array([True, True, False, True])
LABELS = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
PRIOR = np.array([0.9, 0.2, 0.5, 0.6], np.float32)
TEACHER = np.array([0.8, 0.1, 0.3, 0.4], np.float32)
STUDENT = np.array([1.0, 0.0, 0.5, 0.5], np.float32)
TEACHER_FULL = np.array([[0.9, 0.9, 0.1, 0.1],
                         [0.9, 0.9, 0.1, 0.6],
                         [0.1, 0.1, 0.9, 0.5],
                         [0.1, 0.4, 0.9, 0.9]], np.float32)
HELDOUT_TRUTH = np.array([[1, 1, 0, 0],
                          [1, 0, 0, 0],
                          [0, 0, 1, 1],
                          [0, 0, 1, 1]], bool)
CODES = np.array([L.TEACHER, L.BACKGROUND, L.IGNORE, L.FOREGROUND], np.int8)


def ctx(**kw) -> StepContext:
    base = dict(selection=SEL, labels=LABELS, prior=PRIOR, student=STUDENT, teacher=TEACHER,
                no_prior=False, codes=CODES, teacher_full=TEACHER_FULL)
    base.update(kw)
    return StepContext(**base)


def test_registry_holds_the_documented_rewards():
    assert {"heldout", "agreement", "utility", "hybrid", "oracle"} <= set(REWARDS)
    assert [n for n, c in REWARDS.items() if c.uses_ground_truth] == ["oracle"]
    with pytest.raises(ValueError, match="unknown reward 'nope'.*heldout"):
        make_reward("nope")
    with pytest.raises(ValueError, match="bad reward_options for reward 'agreement'"):
        make_reward("agreement", bogus=1.0)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_reward_builds_and_scores_a_step(name):
    reward = make_reward(name)
    assert isinstance(reward, Reward) and reward.name == name
    truth = (lambda: np.array([0.9, 0.6, 0.8, 0.2], np.float32)) if reward.uses_ground_truth else None
    res = reward.step(ctx(truth=truth))
    assert isinstance(res, RewardResult) and np.isfinite(res.value)
    assert res.cell_rewards is not None and res.cell_rewards.shape == (4,)
    assert np.isfinite(reward.on_update(0.1))


def test_agreement_exact():
    # reliability = (1 * prior support + 1 * teacher support + 0.5 * student support) / 2.5
    # cell 0 (label 1): (0.9 + 0.8 + 0.5 * 1.0) / 2.5 = 0.88;  cell 1 (label 0): (0.8 + 0.9 + 0.5) / 2.5
    # cell 2 is not selected; cell 3 (label 0): (0.4 + 0.6 + 0.25) / 2.5 = 0.5
    res = make_reward("agreement").step(ctx())
    expected = np.array([0.88 - 0.7, 0.88 - 0.7, 0.0, 0.5 - 0.7]) / 4   # minus margin 0.75 + bonus 0.05
    np.testing.assert_allclose(res.cell_rewards, expected, atol=1e-6)
    assert res.value == pytest.approx(expected.sum(), abs=1e-6)
    assert res.components["agreement"] == pytest.approx((0.88 + 0.88 + 0.5) / 3, abs=1e-6)
    assert res.components["coverage"] == 0.75
    assert res.choice_scores is None


def test_agreement_ignores_a_flat_prior_and_honours_options():
    res = make_reward("agreement").step(ctx(no_prior=True))
    # without the prior's vote: cell 0 (0.8 + 0.5) / 1.5
    assert res.cell_rewards[0] == pytest.approx((1.3 / 1.5 - 0.7) / 4, abs=1e-6)
    custom = make_reward("agreement", prior_weight=0.0, teacher_weight=1.0, student_weight=0.0,
                         margin=0.5, coverage_bonus=0.0, scale=4.0)
    np.testing.assert_allclose(custom.step(ctx()).cell_rewards, [0.3, 0.4, 0.0, 0.1], atol=1e-6)
    nothing = make_reward("agreement").step(ctx(selection=np.zeros(4, bool)))
    assert nothing.value == 0.0 and nothing.components == {"agreement": 0.0, "coverage": 0.0}


def test_utility_is_delayed_only():
    reward = make_reward("utility")
    res = reward.step(ctx())
    assert res.value == 0.0 and not res.cell_rewards.any()
    assert reward.on_update(0.05) == pytest.approx(0.5)
    assert make_reward("utility", scale=2.0).on_update(-0.25) == pytest.approx(-0.5)


def test_hybrid_is_the_weighted_sum():
    reward = make_reward("hybrid", agreement_weight=2.0, utility_weight=3.0,
                         agreement={"margin": 0.5}, utility={"scale": 4.0})
    res = reward.step(ctx())
    alone = make_reward("agreement", margin=0.5).step(ctx())
    np.testing.assert_allclose(res.cell_rewards, 2.0 * alone.cell_rewards, atol=1e-7)
    assert res.value == pytest.approx(2.0 * alone.value, abs=1e-7)
    assert reward.on_update(0.1) == pytest.approx(3.0 * 4.0 * 0.1)


def test_heldout_exact_with_wrong_cost_and_fg_weight():
    reward = make_reward("heldout", wrong_cost=2.0, fg_weight=3.0)
    res = reward.step(ctx(heldout_truth=HELDOUT_TRUTH))
    # per-cell choice scores (see test_labels): rows (ignore, bg, fg, teacher), divided by 4 cells
    table = np.array([[0.0, -4.25, 1.75, 1.75],
                      [0.0, 1.0, -2.0, 0.25],
                      [0.0, 1.0, -2.0, 1.0],
                      [0.0, -6.0, 3.0, 0.75]]) / 4
    np.testing.assert_allclose(res.choice_scores, table, atol=1e-6)
    # codes: teacher, background, ignore, foreground
    np.testing.assert_allclose(res.cell_rewards, [1.75 / 4, 1.0 / 4, 0.0, 3.0 / 4], atol=1e-6)
    assert res.value == pytest.approx((1.75 + 1.0 + 3.0) / 4, abs=1e-6)
    assert res.components["heldout"] == pytest.approx(res.value)
    assert res.components["heldout_best"] == pytest.approx((1.75 + 1.0 + 1.0 + 3.0) / 4, abs=1e-6)
    assert reward.on_update(0.3) == 0.0       # no delayed part by default
    assert make_reward("heldout", utility_weight=2.0).on_update(0.05) == pytest.approx(1.0)


def test_heldout_scores_nothing_on_unlabeled_steps():
    res = make_reward("heldout").step(ctx(heldout_truth=None))
    assert res.value == 0.0 and res.choice_scores is None and not res.cell_rewards.any()
    assert res.components == {}
    with pytest.raises(RuntimeError, match="cell choices"):
        make_reward("heldout").step(ctx(heldout_truth=HELDOUT_TRUTH, codes=None))
    with pytest.raises(ValueError, match="bad reward_options.*heldout|wrong_cost"):
        make_reward("heldout", wrong_cost=-1.0)
    with pytest.raises(ValueError, match="fg_weight"):
        make_reward("heldout", fg_weight=0.0)


def test_oracle_exact():
    truth_calls = []

    def truth():
        truth_calls.append(1)
        return np.array([0.9, 0.6, 0.8, 0.2], np.float32)

    res = make_reward("oracle").step(ctx(truth=truth))
    # selected foreground cells {0}; true cells {0, 1, 2}: IoU 1/3
    assert res.value == pytest.approx(1 / 3) and res.components["oracle_iou"] == pytest.approx(1 / 3)
    # per selected cell +1/4 when its label is right, -1/4 when wrong (cell 1: label 0, truth 1)
    np.testing.assert_allclose(res.cell_rewards, [0.25, -0.25, 0.0, 0.25])
    assert truth_calls
    with pytest.raises(RuntimeError, match="ground-truth masks"):
        make_reward("oracle").step(ctx(truth=None))


# --------------------------------------------------------------------------- in the env
@pytest.mark.parametrize("reward, options", [("heldout", {"utility_weight": 3.0}), ("hybrid", {})])
def test_env_reward_is_cell_rewards_plus_the_delayed_part(l2l_cache, reward, options):
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, reward=reward, reward_options=options,
                                                     update_steps=2))
    env.reset(seed=1)
    # The tiny untrained segmenter's probe mIoU stays 0: feed the delayed part known probe scores.
    probe = iter([0.1, 0.3, 0.25])
    env.unwrapped.trainer.probe_score = lambda: next(probe)
    rng = np.random.default_rng(0)
    updates, delays = 0, []
    for _ in range(16):
        _, r, _, _, info = env.step(rng.integers(0, 4, 64))
        immediate = float(np.sum(info["cell_rewards"], dtype=np.float64))
        if info["updated"]:
            updates += 1
            delayed = info["reward_components"]["utility"]
            delays.append(delayed)
            scale = options.get("utility_weight", 1.0) * 10.0
            assert delayed == pytest.approx(scale * info["segmenter"]["probe_delta"], abs=1e-9)
            assert r == pytest.approx(immediate + delayed, abs=1e-6)
        else:
            assert "utility" not in info["reward_components"]
            assert r == pytest.approx(immediate, abs=1e-6)
    assert updates == 2
    scale = options.get("utility_weight", 1.0) * 10.0
    assert delays == pytest.approx([scale * 0.2, scale * -0.05], abs=1e-9)


def test_env_heldout_scores_calibration_steps_only(l2l_cache):
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, calibration_every=3))
    env.reset(seed=0)
    u = env.unwrapped
    rng = np.random.default_rng(1)
    for pos in range(12):
        codes = rng.integers(0, 4, 64)
        _, r, _, _, info = env.step(codes)
        row = u.last_construction["row"]
        assert info["calibration"] == (pos % 3 == 2) == u.is_calibration(row) == info["scored"]
        if info["scored"]:
            scores = info["cell_scores"]
            assert scores.shape == (64, 4)
            expected = L.choice_scores(u.last_construction["teacher"], u.diagnostic_mask(row), 8) / 64
            np.testing.assert_allclose(scores, expected, atol=1e-7)
            assert r == pytest.approx(float(scores[np.arange(64), codes].sum()), abs=1e-5)
            assert not any(k.startswith("pl_") for k in info)   # no diagnostics on labeled probes
        else:
            assert "cell_scores" not in info and r == 0.0
            assert {"pl_iou_prior", "pl_iou_teacher", "pl_iou_label"} <= set(info)


def test_heldout_needs_calibration_steps(l2l_cache):
    from l2l_env.env import PseudoLabelEnv

    with pytest.raises(ValueError, match="calibration_every"):
        PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, reward="heldout", calibration_every=0))
    env = PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, reward="agreement", calibration_every=0))
    env.reset(seed=0)
    infos = [env.step(np.full(64, L.TEACHER))[4] for _ in range(8)]
    assert not any(i["calibration"] or i["scored"] for i in infos)
