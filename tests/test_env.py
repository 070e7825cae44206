"""The pseudo-label environment: registration, spaces, checkers, determinism, dynamics, integrity."""

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
from l2l_env.data.types import RefRecord
from l2l_env.env import PseudoLabelEnv
from l2l_env.wrappers import CellWeightsAction, ThresholdAction


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


def _rollout(env, steps, seed=7):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(rng.integers(0, 2, env.action_space.n))
        out.append((obs, reward, term, trunc, info))
        if trunc:
            obs, _ = env.reset()
            out.append(obs)
    return out


def test_spaces_and_documented_ranges(make_env):
    env = make_env(include_image=True)
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.MultiBinary(64)
    assert env.observation_space.contains(obs)
    assert set(obs) == {"prior", "student", "teacher", "uncertainty", "text", "no_prior",
                        "progress", "image"}
    for key in ("prior", "student", "teacher", "uncertainty"):
        assert obs[key].shape == (1, 8, 8) and obs[key].dtype == np.float32
    assert obs["text"].shape == (384,) and abs(np.linalg.norm(obs["text"]) - 1) < 1e-4
    assert obs["image"].shape == (3, 8, 8)
    assert isinstance(info["sample_id"], str)


def test_gymnasium_and_sb3_env_checkers_pass(make_env):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env()
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


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
        env.step(np.ones(64, np.int8))
    assert seg.step == 2  # two updates of one optimiser step each
    obs_continue, info = env.reset()
    assert info["global_step"] == 17 and seg.step == 2
    obs_again, info = env.reset(seed=3)
    assert info["global_step"] == 0 and seg.step == 0
    assert data_equivalence(obs0, obs_again, exact=True)


def test_segmenter_trains_every_k_steps_and_states_reflect_it(make_env):
    env = make_env(update_steps=3)
    env.reset(seed=0)
    u = env.unwrapped
    before = u._predictions(8)["student_grid"].copy()
    infos = [env.step(np.ones(64, np.int8))[4] for _ in range(8)]
    assert [i["updated"] for i in infos] == [False] * 7 + [True]
    assert infos[-1]["segmenter"]["segmenter_step"] == 3
    assert infos[-1]["segmenter"]["pseudo_samples"] == 8
    after = u._predictions(8)["student_grid"]
    assert not np.allclose(before, after)  # later states see the new segmenter


def test_episodes_truncate_never_terminate(make_env):
    env = make_env(episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(64, np.int8))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


@pytest.mark.parametrize("action, message", [
    (np.ones(63, np.int8), "shape"),
    (np.ones((8, 8), np.int8), "shape"),
    (np.full(64, np.nan, np.float32), "NaN"),
    (np.full(64, 0.5, np.float32), "exactly 0 or 1"),
    (np.full(64, 2, np.int64), "0 or 1"),
    (np.array(["1"] * 64), "dtype"),
])
def test_bad_actions_raise_clear_errors(make_env, action, message):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.unwrapped.step(action)


def test_float_zero_one_actions_are_accepted(make_env):
    env = make_env()
    env.reset(seed=0)
    env.unwrapped.step(np.ones(64, np.float32))


def test_unknown_config_key_and_bad_values_are_errors(l2l_cache):
    with pytest.raises(ValueError, match="unknown env config key.*grid"):
        PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, grid=8))
    with pytest.raises(ValueError, match="label_source"):
        PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, label_source="gt"))
    with pytest.raises(ValueError, match="reward"):
        PseudoLabelEnv(**tiny_env_kwargs(l2l_cache, reward="truth"))


def test_cell_weights_wrapper(make_env):
    env = CellWeightsAction(make_env())
    assert env.action_space.shape == (64,) and env.action_space.low.min() == -1
    env.reset(seed=0)
    w = np.linspace(-1, 1, 64).astype(np.float32)
    assert np.array_equal(env.action(w), (w > 0).astype(np.int8))
    _, _, _, _, info = env.step(w)
    assert info["coverage"] == pytest.approx((w > 0).mean())
    with pytest.raises(ValueError, match="NaN"):
        env.action(np.full(64, np.nan))


def test_threshold_wrapper_selects_confident_cells(make_env):
    env = ThresholdAction(make_env())
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
        env = make_env(label_source=source)
        obs, _ = env.reset(seed=0)
        maps = {"teacher": obs["teacher"], "prior": obs["prior"],
                "fused": 0.5 * (obs["teacher"] + obs["prior"])}
        info = env.step(np.ones(64, np.int8))[4]
        assert info["label_fg_fraction"] == pytest.approx(float((maps[source] > 0.5).mean()), abs=1e-6)


def test_render_rgb_array(make_env):
    env = make_env(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.ones(64, np.int8))
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert frame.shape[0] > 64 and frame.std() > 0


def test_sb3_ppo_learns_on_the_env(make_env):
    from stable_baselines3 import PPO

    env = make_env()
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]}, device="cpu")
    model.learn(total_timesteps=32)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert action.shape == (64,)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec(l2l_cache, mode):
    envs = gym.make_vec(l2l_env.ENV_ID, num_envs=2, vectorization_mode=mode,
                        **tiny_env_kwargs(l2l_cache))
    try:
        obs, _ = envs.reset(seed=[1, 2])
        assert obs["prior"].shape == (2, 1, 8, 8)
        obs, reward, term, trunc, info = envs.step(np.ones((2, 64), np.int8))
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


# --------------------------------------------------------------------------- integrity
def test_unlabeled_ground_truth_never_reaches_rewards_or_training(l2l_cache, monkeypatch):
    """With diagnostics off, no unlabeled mask is ever decoded, and the run is identical."""
    reference = _rollout(gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache)), 20)
    probe = PseudoLabelEnv(**tiny_env_kwargs(l2l_cache))
    unlabeled_images = set(probe.label_split.unlabeled)
    original = RefRecord.load_mask

    def guarded(self):
        if self.image_id in unlabeled_images:
            raise AssertionError(f"unlabeled mask of image {self.image_id} was read")
        return original(self)

    monkeypatch.setattr(RefRecord, "load_mask", guarded)
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, diagnostics=False))
    blind = _rollout(env, 20)
    assert any(isinstance(t, tuple) and t[4]["updated"] for t in blind)
    diag_keys = {"pl_precision", "pl_fg_precision", "pl_recall", "pl_selected_pixels",
                 "pl_correct_pixels"}
    for a, b in zip(reference, blind):
        if isinstance(a, tuple):
            info_a = {k: v for k, v in a[4].items() if k not in diag_keys}
            assert data_equivalence(a[:4], b[:4], exact=True)
            assert data_equivalence(info_a, b[4], exact=True)
            assert not b[4]["oracle"]
        else:
            assert data_equivalence(a, b, exact=True)


def test_oracle_reward_is_flagged_and_needs_ground_truth(l2l_cache):
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, reward="oracle"))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(64, np.int8))
    assert info["oracle"] is True and 0.0 <= reward <= 1.0
    blind = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, reward="oracle", diagnostics=False))
    blind.reset(seed=0)
    with pytest.raises(RuntimeError, match="ground-truth masks"):
        blind.step(np.ones(64, np.int8))


def test_state_dict_is_a_snapshot_and_resume_continues_exactly(make_env):
    env = make_env()
    env.reset(seed=5)
    ones = np.ones(64, np.int8)
    for _ in range(5):
        env.step(ones)
    state = env.unwrapped.state_dict()
    weights = {k: v.clone() for k, v in state["segmenter"]["model"].items()}
    expected = [env.step(ones)[1] for _ in range(12)]  # crosses an update: the segmenter trains
    assert all(np.array_equal(weights[k].numpy(), v.numpy())
               for k, v in state["segmenter"]["model"].items())
    other = make_env()
    other.reset(seed=0)
    other.unwrapped.load_state_dict(state)
    assert [other.step(ones)[1] for _ in range(12)] == expected
