"""The pseudo-label environment: registration, spaces, checkers, determinism, dynamics, training.

Ground-truth integrity (what may read which mask) is in ``test_integrity.py``; the rewards in
``test_rewards.py``; label construction in ``test_labels.py``.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence

import l2l_env
from env_fixtures import tiny_env_kwargs
from l2l_env import labels as L
from l2l_env.env import PseudoLabelEnv
from l2l_env.wrappers import CellWeightsAction, ThresholdAction

pytestmark = pytest.mark.usefixtures("one_thread")
N = 64  # cells of the tiny env's 8x8 grid
SCALE = 8  # pixels per cell side (64-pixel inputs)


@pytest.fixture
def make_env(l2l_cache):
    envs = []

    def factory(**overrides):
        env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, **overrides))
        envs.append(env)
        return env
    yield factory
    for env in envs:
        env.close()


def random_action(space: gym.Space, rng: np.random.Generator) -> np.ndarray:
    """A seeded random action of either action form."""
    high = int(space.nvec.max()) if isinstance(space, gym.spaces.MultiDiscrete) else 2
    return rng.integers(0, high, space.shape).astype(np.int64)


def _rollout(env, steps, seed=7):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(random_action(env.action_space, rng))
        out.append((obs, reward, term, trunc, info))
        if trunc:
            obs, _ = env.reset()
            out.append(obs)
    return out


# --------------------------------------------------------------------------- spaces and checkers
def test_spaces_and_documented_ranges(make_env):
    env = make_env(include_image=True)
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.MultiDiscrete(np.full(N, len(L.CHOICES)))
    assert env.observation_space.contains(obs)
    assert set(obs) == {"prior", "student", "teacher", "uncertainty", "text", "no_prior",
                        "progress", "image"}
    for key in ("prior", "student", "teacher", "uncertainty"):
        assert obs[key].shape == (1, 8, 8) and obs[key].dtype == np.float32
    assert obs["text"].shape == (384,) and abs(np.linalg.norm(obs["text"]) - 1) < 1e-4
    assert obs["image"].shape == (3, 8, 8)
    assert isinstance(info["sample_id"], str)


def test_select_form_is_multibinary(make_env):
    env = make_env(action="select")
    assert env.action_space == gym.spaces.MultiBinary(N)
    env.reset(seed=0)
    info = env.step(np.ones(N, np.int8))[4]
    assert info["coverage"] == 1.0


@pytest.mark.parametrize("form", ["construct", "select"])
def test_gymnasium_and_sb3_env_checkers_pass(make_env, form):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(action=form)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


def test_prior_score_observation_is_off_by_default_and_checked_when_on(make_env):
    """``include_prior_score`` adds the provider's confidence of the visited sample's prior."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    assert "prior_score" not in make_env().observation_space.spaces
    env = make_env(include_prior_score=True)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space["prior_score"] == gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    bank = env.unwrapped.loop_bank
    seen = set()
    for _ in range(12):
        score = float(obs["prior_score"][0])
        obs, _, _, _, info = env.step(np.zeros(N, np.int64))  # info: the sample acted on
        row = bank.sample_ids.index(info["sample_id"])
        assert score == pytest.approx(bank.prior_score[row])
        assert score == 0.0 or not bank.no_prior[row]
        seen.add(round(score, 4))
    assert len(seen) > 2  # the simulated grounder's calibrated scores, not a constant


@pytest.mark.parametrize("bad", ["grid", "label_source", "reward", "action", "oracle_obs"])
def test_unknown_config_key_and_bad_values_are_errors(l2l_cache, bad):
    overrides, message = {
        "grid": ({"grid": 8}, "unknown env config key.*grid"),
        "label_source": ({"label_source": "gt"}, "label_source"),
        "reward": ({"reward": "truth"}, "reward"),
        "action": ({"action": "weights"}, "action='weights'.*construct"),
        "oracle_obs": ({"oracle_obs": True, "diagnostics": False}, "oracle_obs"),
    }[bad]
    with pytest.raises(ValueError, match=message):
        PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, **overrides))


CONSTRUCT_BAD = [
    (np.full(N, 4, np.int64), "out of range"),
    (np.full(N, -1, np.int64), "out of range"),
    (np.full(N, 0.5, np.float32), "whole numbers"),
    (np.full(N, np.nan, np.float32), "NaN"),
    (np.full(N, np.inf, np.float32), "infinite"),
    (np.ones(N - 1, np.int8), "shape"),
    (np.ones((8, 8), np.int8), "shape"),
    (np.array(["1"] * N), "dtype"),
]
SELECT_BAD = [
    (np.full(N, 2, np.int64), "out of range"),
    (np.full(N, -1, np.int64), "out of range"),
    (np.full(N, 0.5, np.float32), "whole numbers"),
    (np.full(N, np.nan, np.float32), "NaN"),
    (np.ones(N + 1, np.int8), "shape"),
]


@pytest.mark.parametrize("form, action, message",
                         [("construct", a, m) for a, m in CONSTRUCT_BAD]
                         + [("select", a, m) for a, m in SELECT_BAD])
def test_bad_actions_raise_clear_errors(make_env, form, action, message):
    env = make_env(action=form)
    env.reset(seed=0)
    expected = "MultiDiscrete" if form == "construct" else "MultiBinary"
    with pytest.raises(ValueError, match=message) as err:
        env.unwrapped.step(action)
    assert expected in str(err.value)
    assert env.unwrapped.current_observation() is not None   # the env is still usable
    env.unwrapped.step(np.zeros(N, np.int8))


def test_whole_float_and_bool_actions_are_accepted(make_env):
    env = make_env()
    env.reset(seed=0)
    info = env.unwrapped.step(np.full(N, 3.0, np.float32))[4]
    assert (env.unwrapped.last_construction["codes"] == L.TEACHER).all() and info["coverage"] == 1.0
    sel = make_env(action="select")
    sel.reset(seed=0)
    sel.unwrapped.step(np.ones(N, np.float32))
    assert sel.unwrapped.step(np.zeros(N, bool))[4]["coverage"] == 0.0


# --------------------------------------------------------------------------- determinism
def test_same_seed_rollouts_are_identical_for_50_steps(make_env):
    first = _rollout(make_env(), 50)
    second = _rollout(make_env(), 50)
    assert len(first) == len(second)
    assert any(isinstance(t, tuple) and t[4]["updated"] for t in first)
    for a, b in zip(first, second):
        assert data_equivalence(a, b, exact=True)


def test_reset_with_seed_restores_the_run_and_plain_reset_continues(make_env):
    env = make_env()
    obs0, _ = env.reset(seed=3)
    seg = env.unwrapped.segmenter
    for _ in range(17):
        env.step(np.full(N, L.TEACHER, np.int8))
    assert seg.step == 2  # two updates of one optimiser step each
    obs_continue, info = env.reset()
    assert info["global_step"] == 17 and seg.step == 2
    obs_again, info = env.reset(seed=3)
    assert info["global_step"] == 0 and seg.step == 0
    assert data_equivalence(obs0, obs_again, exact=True)


def test_state_dict_is_a_snapshot_and_resume_continues_exactly(make_env):
    env = make_env()
    env.reset(seed=5)
    teacher = np.full(N, L.TEACHER, np.int8)
    for _ in range(5):
        env.step(teacher)
    state = env.unwrapped.state_dict()
    weights = {k: v.clone() for k, v in state["segmenter"]["model"].items()}
    expected = [env.step(teacher)[1] for _ in range(12)]  # crosses an update: the segmenter trains
    assert all(np.array_equal(weights[k].numpy(), v.numpy())
               for k, v in state["segmenter"]["model"].items())
    assert any(r != 0.0 for r in expected)                 # calibration steps are scored
    other = make_env()
    other.reset(seed=0)
    other.unwrapped.load_state_dict(state)
    assert [other.step(teacher)[1] for _ in range(12)] == expected


# --------------------------------------------------------------------------- dynamics
def test_segmenter_trains_every_k_steps_and_states_reflect_it(make_env):
    env = make_env(update_steps=3)
    env.reset(seed=0)
    u = env.unwrapped
    before = u.predictions_at(8).student_grid.copy()
    infos = [env.step(np.full(N, L.TEACHER, np.int8))[4] for _ in range(8)]
    assert [i["updated"] for i in infos] == [False] * 7 + [True]
    assert infos[-1]["segmenter"]["segmenter_step"] == 3
    # 8 steps, of which steps 3 and 7 are held-out calibration samples (calibration_every=4)
    assert [i["calibration"] for i in infos] == [False, False, False, True] * 2
    assert infos[-1]["segmenter"]["pseudo_samples"] == 6
    after = u.predictions_at(8).student_grid
    assert not np.allclose(before, after)  # later states see the new segmenter


def test_episodes_truncate_never_terminate(make_env):
    env = make_env(episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(N, np.int8))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_calibration_rows_are_the_held_out_probe(make_env):
    env = make_env(calibration_every=2)
    env.reset(seed=0)
    u = env.unwrapped
    assert len(u.loop_bank) == u.num_unlabeled + len(u.probe) and u.num_unlabeled == len(u.unlabeled)
    probe_ids = set(u.probe.sample_ids)
    rows = []
    for pos in range(10):
        info = env.step(np.zeros(N, np.int8))[4]
        row = u.last_construction["row"]
        rows.append(row)
        assert info["calibration"] == (pos % 2 == 1) == u.is_calibration(row)
        assert (info["sample_id"] in probe_ids) == info["calibration"]
        if info["calibration"]:
            np.testing.assert_array_equal(u.diagnostic_mask(row), u.probe.masks[row - u.num_unlabeled])
    assert not set(u.probe.sample_ids) & set(u.labeled.sample_ids)   # never a training sample
    none = make_env(calibration_every=0, reward="agreement")
    none.reset(seed=0)
    assert len(none.unwrapped.loop_bank) == none.unwrapped.num_unlabeled
    assert not any(none.step(np.zeros(N, np.int8))[4]["calibration"] for _ in range(6))


def test_last_construction_and_diagnostics_follow_the_action(make_env):
    env = make_env(calibration_every=0, reward="agreement")
    env.reset(seed=0)
    u = env.unwrapped

    def iou(a, b):
        union = (a | b).sum()
        return float((a & b).sum() / union) if union else 1.0

    rng = np.random.default_rng(3)
    for codes in (np.full(N, L.TEACHER), np.zeros(N, np.int64), rng.integers(0, 4, N)):
        info = env.step(codes)[4]
        last = u.last_construction
        row, gt = last["row"], u.diagnostic_mask(last["row"])
        ref = L.construct(codes.reshape(8, 8), last["teacher"])
        np.testing.assert_array_equal(last["codes"], codes.reshape(8, 8))
        np.testing.assert_array_equal(last["label"], ref.label)
        np.testing.assert_array_equal(last["weight"], ref.weight)
        assert info["pl_iou_prior"] == pytest.approx(iou(u.loop_bank.priors[row] > 0.5, gt))
        assert info["pl_iou_teacher"] == pytest.approx(iou(last["teacher"] > 0.5, gt))
        labeled_fg = (ref.label > 0.5) & (ref.weight > 0.5)
        assert info["pl_iou_label"] == pytest.approx(iou(labeled_fg, gt))
        assert info["pl_selected_pixels"] == int(ref.weight.sum())
        assert info["coverage"] == pytest.approx(float((codes != 0).mean()))
        if (codes == L.TEACHER).all():
            assert info["pl_iou_label"] == info["pl_iou_teacher"]


def test_shard_splits_the_unlabeled_pool(make_env):
    envs = [make_env() for _ in range(3)]
    full = envs[0].unwrapped
    envs[0].reset(seed=0)
    n_refs, n_rows = full.unlabeled.num_refs, len(full.unlabeled)
    ids = [set(full.unlabeled.sample_ids)]
    shards = []
    for rank, env in enumerate(envs[1:]):
        out = env.unwrapped.shard(rank, 2)
        shards.append(set(env.unwrapped.unlabeled.sample_ids))
        assert out["rank"] == rank and out["samples"] == len(shards[-1])
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == ids[0]
    assert sum(e.unwrapped.unlabeled.num_refs for e in envs[1:]) == n_refs
    assert sum(len(e.unwrapped.unlabeled) for e in envs[1:]) == n_rows
    # the loop visits only its own shard (and the probe), and diagnostics follow the shard
    env = envs[1]
    env.reset(seed=0)
    u = env.unwrapped
    for _ in range(6):
        info = env.step(np.full(N, L.TEACHER, np.int8))[4]
        if not info["calibration"]:
            assert info["sample_id"] in shards[0]
            row = u.last_construction["row"]
            np.testing.assert_array_equal(u.diagnostic_mask(row),
                                          full.diagnostic_mask(full.unlabeled.sample_ids.index(
                                              info["sample_id"])))
    with pytest.raises(RuntimeError, match="after the first reset"):
        u.shard(0, 2)
    with pytest.raises(ValueError, match="too small"):
        make_env().unwrapped.shard(n_refs, n_refs + 1)   # rank n_refs gets no object


# --------------------------------------------------------------------------- training inputs
@pytest.fixture
def train_spy(monkeypatch):
    """Record every batch the env's segmenter trains on (then train on it as usual)."""
    def attach(env):
        seg = env.unwrapped.segmenter
        original = seg.train_step
        calls = []

        def spy(images, priors, phrases, targets, weights=None, **extra):
            calls.append({"images": np.array(images), "phrases": list(phrases),
                          "targets": np.array(targets), "weights": np.array(weights), **extra})
            return original(images, priors, phrases, targets, weights, **extra)

        monkeypatch.setattr(seg, "train_step", spy)
        return calls
    return attach


def _labeled_part_is_labeled_data(env, call, n_pseudo):
    u = env.unwrapped
    lab = call["phrases"][n_pseudo:]
    assert len(lab) == u.config.labeled_batch
    assert set(lab) <= set(u.labeled.phrases)
    assert (call["weights"][n_pseudo:] == 1.0).all()


def test_all_ignore_actions_train_on_labeled_data_only(make_env, train_spy):
    env = make_env()
    calls = train_spy(env)
    env.reset(seed=0)
    infos = [env.step(np.zeros(N, np.int8))[4] for _ in range(8)]
    assert infos[-1]["segmenter"]["pseudo_samples"] == 0 and len(calls) == 1
    assert len(calls[0]["phrases"]) == env.unwrapped.config.labeled_batch
    _labeled_part_is_labeled_data(env, calls[0], 0)


def test_one_foreground_cell_trains_exactly_its_pixels(make_env, train_spy):
    env = make_env(pseudo_weight=0.5)
    calls = train_spy(env)
    env.reset(seed=0)
    u = env.unwrapped
    cell = 9                                     # row 1, column 1 of the 8x8 grid
    codes = np.zeros(N, np.int8)
    codes[cell] = L.FOREGROUND
    rows = []
    for _ in range(8):
        info = env.step(codes)[4]
        if not info["calibration"]:
            rows.append(u.last_construction["row"])
    assert len(rows) == 6 and info["segmenter"]["pseudo_samples"] == 6 and len(calls) == 1
    call = calls[0]
    block = np.zeros((64, 64), np.float32)
    block[SCALE:2 * SCALE, SCALE:2 * SCALE] = 1.0
    for i, row in enumerate(rows):              # the pseudo samples come first, in step order
        np.testing.assert_array_equal(call["weights"][i], 0.5 * block)
        np.testing.assert_array_equal(call["targets"][i], block)
        np.testing.assert_array_equal(call["images"][i], u.loop_bank.images[row])
        assert call["phrases"][i] == u.loop_bank.phrases[row]
    _labeled_part_is_labeled_data(env, call, 6)


def test_teacher_cells_train_on_the_teachers_pixels(make_env, train_spy):
    env = make_env()
    calls = train_spy(env)
    env.reset(seed=0)
    u = env.unwrapped
    codes = np.full(N, L.IGNORE, np.int8)
    codes[:8] = L.TEACHER                        # the top row of cells
    labels = []
    for _ in range(8):
        info = env.step(codes)[4]
        if not info["calibration"]:
            labels.append(u.last_construction["teacher"][:SCALE] > 0.5)
    call = calls[0]
    for i, lab in enumerate(labels):
        assert (call["weights"][i][:SCALE] == 1.0).all() and not call["weights"][i][SCALE:].any()
        np.testing.assert_array_equal(call["targets"][i][:SCALE], lab.astype(np.float32))
        assert not call["targets"][i][SCALE:].any()


def test_calibration_steps_never_reach_training(make_env, train_spy):
    env = make_env(update_steps=2)
    calls = train_spy(env)
    env.reset(seed=0)
    u = env.unwrapped
    probe_phrases = set(u.probe.phrases)
    for pos in range(16):
        calibration = pos % 4 == 3               # calibration_every=4: every 4th step
        codes = np.full(N, L.TEACHER if calibration else L.IGNORE, np.int8)
        info = env.step(codes)[4]
        assert info["calibration"] == calibration
        if info["updated"]:
            assert info["segmenter"]["pseudo_samples"] == 0
    assert len(calls) == 4
    for call in calls:                           # labeled data only, never a probe sample
        assert len(call["phrases"]) == u.config.labeled_batch
        _labeled_part_is_labeled_data(env, call, 0)
        assert not (set(call["phrases"]) - set(u.labeled.phrases)) & probe_phrases


# --------------------------------------------------------------------------- wrappers, render, vec
def test_cell_weights_wrapper(make_env):
    env = CellWeightsAction(make_env(action="select"))
    assert env.action_space.shape == (N,) and env.action_space.low.min() == -1
    env.reset(seed=0)
    w = np.linspace(-1, 1, N).astype(np.float32)
    assert np.array_equal(env.action(w), (w > 0).astype(np.int8))
    _, _, _, _, info = env.step(w)
    assert info["coverage"] == pytest.approx((w > 0).mean())
    with pytest.raises(ValueError, match="NaN"):
        env.action(np.full(N, np.nan))
    with pytest.raises(TypeError, match="MultiBinary"):
        CellWeightsAction(make_env())            # the construct form has no selection to weigh


def test_threshold_wrapper_selects_confident_cells(make_env):
    env = ThresholdAction(make_env(action="select"))
    obs, _ = env.reset(seed=0)
    teacher = obs["teacher"].ravel()
    fg, bg = float(np.quantile(teacher, 0.8)), float(np.quantile(teacher, 0.2))
    chosen = env.action(np.array([fg, bg]))
    assert np.array_equal(chosen.astype(bool), (teacher >= fg) | (teacher <= bg))
    assert np.array_equal(env.action(np.array([1.0, 0.0])).astype(bool),
                          (teacher >= 1.0) | (teacher <= 0.0))
    _, _, _, _, info = env.step(np.array([fg, bg], np.float32))
    assert info["coverage"] == pytest.approx(chosen.mean())


def test_label_sources_take_label_values_from_the_named_map(make_env):
    for source in ("teacher", "prior", "fused"):
        env = make_env(action="select", label_source=source, calibration_every=0, reward="agreement")
        env.reset(seed=0)
        u = env.unwrapped
        env.step(np.ones(N, np.int8))
        last = u.last_construction
        full = {"teacher": last["teacher"], "prior": u.loop_bank.priors[last["row"]],
                "fused": 0.5 * (last["teacher"] + u.loop_bank.priors[last["row"]])}[source]
        np.testing.assert_array_equal(last["label"], (full > 0.5).astype(np.float32))
        assert (last["weight"] == 1.0).all()


def test_render_rgb_array(make_env):
    env = make_env(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.full(N, L.TEACHER, np.int8))
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert frame.shape[0] > 64 and frame.std() > 0


@pytest.mark.parametrize("form", ["construct", "select"])
def test_sb3_ppo_learns_on_the_env(make_env, form):
    from stable_baselines3 import PPO

    env = make_env(action=form)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]}, device="cpu")
    model.learn(total_timesteps=32)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert action.shape == (N,) and env.action_space.contains(action)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec(l2l_cache, mode):
    envs = gym.make_vec(l2l_env.ENV_ID, num_envs=2, vectorization_mode=mode,
                        **tiny_env_kwargs(l2l_cache))
    try:
        obs, _ = envs.reset(seed=[1, 2])
        assert obs["prior"].shape == (2, 1, 8, 8)
        obs, reward, term, trunc, info = envs.step(np.full((2, N), L.TEACHER, np.int8))
        assert reward.shape == (2,) and not term.any()
    finally:
        envs.close()


def test_id_resolves_in_a_fresh_process_without_import(l2l_cache):
    code = ("import gymnasium as gym; "
            f"e = gym.make('l2l_env:l2l/PseudoLabel-v0', **{tiny_env_kwargs(l2l_cache)!r}); "
            "o, _ = e.reset(seed=0); print(sorted(o))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'teacher'" in out.stdout


def test_registration_is_idempotent():
    l2l_env.register_envs()
    l2l_env.register_envs()
    assert gym.spec(l2l_env.ENV_ID).entry_point == "l2l_env.env:PseudoLabelEnv"
