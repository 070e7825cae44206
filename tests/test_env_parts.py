"""The env built from parts: loaded banks, the self-trainer, evaluation of a loaded split, the
key schema. Behaviour must not depend on how the env was put together."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import l2l_env
from env_fixtures import record_training, tiny_env_kwargs
from l2l_env import schema
from l2l_env.config import make_config
from l2l_env.env import PseudoLabelEnv
from l2l_env.evaluation import EvalSplit, evaluate_segmenter, load_eval_split
from l2l_env.factory import build_segmenter
from l2l_env.loop_data import load_loop_data
from l2l_env.self_training import SelfTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts(l2l_cache, one_thread):
    cfg = make_config(**tiny_env_kwargs(l2l_cache))
    seg = build_segmenter(cfg)
    return cfg, seg, load_loop_data(cfg, int(seg.config.image_size))


def run_steps(env: gym.Env, n: int) -> list[float]:
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(n):
        action = rng.integers(0, 4, env.action_space.shape)
        rewards.append(env.step(action)[1])
    return rewards


def test_from_parts_steps_exactly_like_gym_make(l2l_cache, parts):
    cfg, _, data = parts
    made = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache))
    seg = build_segmenter(cfg)  # a fresh segmenter with the same seed: the same start
    built = PseudoLabelEnv.from_parts(seg, data, config=cfg)
    assert run_steps(made, 20) == run_steps(built, 20)
    a = made.unwrapped.segmenter.state_dict()["model"]
    b = built.segmenter.state_dict()["model"]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_from_parts_refuses_warm_up_settings_and_data_without_segmenter(parts):
    cfg, seg, data = parts
    with pytest.raises(ValueError, match="warmup_steps=5"):
        PseudoLabelEnv.from_parts(seg, data, config={**cfg.to_dict(), "warmup_steps": 5})
    with pytest.raises(ValueError, match="needs segmenter="):
        PseudoLabelEnv(cfg, data=data)


def test_loop_data_shard_is_a_disjoint_cover_of_the_pool(parts):
    _, _, data = parts
    shards = [data.shard(r, 3) for r in range(3)]
    ids = [set(s.unlabeled.sample_ids) for s, _ in shards]
    assert sum(len(i) for i in ids) == len(data.unlabeled)
    assert set().union(*ids) == set(data.unlabeled.sample_ids)
    assert all(not (ids[i] & ids[j]) for i in range(3) for j in range(i + 1, 3))
    first, info = shards[0]
    assert info["samples"] == len(first.unlabeled)
    # the vault follows the rows: shard row 0 is the pool row of the same sample
    row = data.unlabeled.sample_ids.index(first.unlabeled.sample_ids[0])
    assert np.array_equal(first.vault.mask(0), data.vault.mask(row))
    with pytest.raises(ValueError, match="rank"):
        data.shard(3, 3)


def test_self_trainer_trains_on_exactly_the_pending_labels(parts):
    cfg, _, data = parts
    seg = build_segmenter(cfg)
    seen = record_training(seg, lambda phrases, targets, weights, **_: (
        list(phrases), targets.copy(), weights.copy()))
    trainer = SelfTrainer(seg, data.labeled, data.probe, data.unlabeled, update_steps=2,
                          labeled_batch=3, pseudo_weight=0.5)
    S = int(seg.config.image_size)
    label = np.zeros((S, S), np.float32)
    label[:4] = 1.0
    weight = np.zeros((S, S), np.float32)
    weight[:8] = 1.0
    trainer.add(5, label, weight)
    trainer.add(6, label, np.zeros((S, S), np.float32))  # nothing labeled: dropped
    stats = trainer.update(np.random.default_rng(0))
    assert stats["pseudo_samples"] == 1 and trainer.pending == []
    assert len(seen) == 2
    for phrases, targets, weights in seen:
        assert len(phrases) == 1 + 3 and phrases[0] == data.unlabeled.phrases[5]
        assert np.array_equal(targets[0], label)
        assert np.array_equal(weights[0], 0.5 * weight)
        assert (weights[1:] == 1.0).all()
    assert stats["probe_mIoU"] == pytest.approx(trainer.probe_score())


def test_evaluation_takes_a_loaded_split(parts, monkeypatch):
    cfg, seg, _ = parts
    split = load_eval_split(cfg, "val")
    assert isinstance(split, EvalSplit) and len(split) > 0
    first = evaluate_segmenter(seg, split, batch_size=8, max_samples=10)
    import l2l_env.loop_data as loop_data

    def no_reload(*args, **kwargs):
        raise AssertionError("evaluation reloaded the data")

    monkeypatch.setattr(loop_data, "load_table", no_reload)
    again = evaluate_segmenter(seg, split, batch_size=4, max_samples=10)
    assert again["mIoU"] == pytest.approx(first["mIoU"])
    with pytest.raises(TypeError, match="EvalSplit"):
        evaluate_segmenter(seg, cfg)


def test_every_observation_and_info_key_is_in_the_schema(l2l_cache):
    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, include_image=True,
                                                     include_prior_score=True))
    obs, _ = env.reset(seed=0)
    known_obs = (set(schema.MAP_KEYS) | {schema.IMAGE_KEY, schema.TEXT_KEY, schema.PRIOR_SCORE_KEY}
                 | set(schema.VECTOR_KEYS))
    assert set(obs) == known_obs
    known_info = (set(schema.STEP_INFO_KEYS) | set(schema.UPDATE_INFO_KEYS)
                  | set(schema.SCORED_INFO_KEYS) | set(schema.DIAGNOSTIC_KEYS))
    seen: set[str] = set()
    rng = np.random.default_rng(0)
    for _ in range(16):
        _, _, _, _, info = env.step(rng.integers(0, 4, env.action_space.shape))
        assert set(schema.STEP_INFO_KEYS) <= set(info)
        assert set(info) <= known_info, set(info) - known_info
        if not info["calibration"]:
            assert set(schema.DIAGNOSTIC_KEYS) <= set(info)
            assert info["pl_cell_correct"].shape == (env.unwrapped.grid_size ** 2,)
            assert ((0 <= info["pl_cell_correct"]) & (info["pl_cell_correct"] <= 1)).all()
        seen |= set(info)
    assert "segmenter" in seen and "cell_scores" in seen
    blind = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, diagnostics=False))
    blind.reset(seed=0)
    _, _, _, _, info = blind.step(np.zeros(blind.action_space.shape, np.int64))
    assert not set(schema.DIAGNOSTIC_KEYS) & set(info)


def test_distractor_priors_point_at_another_object_and_training_sees_them(l2l_cache):
    cfg = make_config(**tiny_env_kwargs(l2l_cache, segmenter={**tiny_env_kwargs(l2l_cache)["segmenter"],
                                                              "prior_swap": 1.0}))
    seg = build_segmenter(cfg)
    data = load_loop_data(cfg, int(seg.config.image_size), distractors=True)
    lab = data.labeled
    assert lab.distractors is not None and lab.distractors.shape == lab.priors.shape
    assert data.unlabeled.distractors is None  # only labeled samples train with them
    distractors, priors, masks = lab.distractors[:], lab.priors[:], lab.masks[:]
    inside = (distractors * masks).sum((1, 2)) / distractors.sum((1, 2))
    own = (priors * masks).sum((1, 2)) / priors.sum((1, 2))
    assert np.median(inside) < 0.3 < np.median(own)  # mostly off the referent, unlike its prior
    seen = record_training(seg, lambda priors, **_: priors.copy())
    trainer = SelfTrainer(seg, lab, data.probe, data.unlabeled, update_steps=1, labeled_batch=3,
                          pseudo_weight=1.0)
    trainer.update(np.random.default_rng(0))
    rows = np.random.default_rng(0).choice(len(lab), size=3, replace=False)
    assert np.array_equal(seen[0], lab.distractors[rows])  # prior_swap = 1: every one swapped


@pytest.mark.parametrize("env_id", sorted(l2l_env.ENV_IDS))
def test_every_registered_id_builds_and_steps(env_id, l2l_cache, tmp_path):
    """Every id: registered, its data set fixed by the id; the RefCOCO ids name ``data_root``
    when it is missing and run on the refer-format fixture (simulated priors) when given."""
    from refer_fixtures import write_refer_fixture

    spec = gym.spec(env_id)
    dataset = spec.kwargs.get("dataset", "synthref")
    kwargs = tiny_env_kwargs(l2l_cache)
    if dataset != "synthref":
        with pytest.raises(ValueError, match=r"data_root=None is invalid; expected the refer data "
                                             rf"root .*dataset='{re.escape(dataset)}'"):
            gym.make(env_id, **kwargs)
        write_refer_fixture(tmp_path / "refer", dataset=dataset,
                            split_by="umd" if dataset == "refcocog" else "unc")
        kwargs.update(data_root=str(tmp_path / "refer"), data_options={}, label_ratio=0.5,
                      reward="hybrid", calibration_every=0, probe_size=0, split_dir=str(tmp_path))
    env = gym.make(env_id, **kwargs)
    assert env.unwrapped.config.dataset == dataset
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(9):  # past one segmenter update
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and not terminated
    assert env.unwrapped.segmenter.step > 0


def test_the_refcoco_plus_name_as_written_is_an_alias_gym_spec_finds():
    spec = gym.spec(l2l_env.REFCOCO_PLUS_ALIAS)
    assert spec is gym.spec("l2l/PseudoLabel-RefCOCOplus-v0") and spec.kwargs == {"dataset": "refcoco+"}
    with pytest.raises(ValueError, match="data_root"):
        gym.make(spec)  # made from the spec; the "+" id string itself gymnasium's make rejects


def test_gym_make_warms_up_once_through_the_shared_warm_up_cache(l2l_cache, tmp_path, monkeypatch):
    from l2l_env import warmup  # the one warm-up: its training calls are counted

    calls = []
    real_fit = warmup.fit
    monkeypatch.setattr(warmup, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    kwargs = tiny_env_kwargs(l2l_cache, warmup_steps=3, warmup_cache=str(tmp_path / "warm"))
    first = gym.make(l2l_env.ENV_ID, **kwargs)
    second = gym.make(l2l_env.ENV_ID, **kwargs, label_source="prior")  # same warm-up, read back
    assert calls == [1] and len(list((tmp_path / "warm").glob("warmup-*.pt"))) == 1
    a, b = first.unwrapped.segmenter.state_dict()["model"], second.unwrapped.segmenter.state_dict()["model"]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    (next((tmp_path / "warm").glob("warmup-*.pt"))).write_bytes(b"garbage")
    gym.make(l2l_env.ENV_ID, **kwargs)  # an unreadable cache is warmed up again and rewritten
    assert calls == [1, 1]


def test_pseudo_prior_dropout_trains_pseudo_labels_without_their_prior(parts):
    cfg, _, data = parts
    seg = build_segmenter(cfg)
    seen = record_training(seg, lambda priors, **_: priors.copy())
    S = int(seg.config.image_size)
    for chance in (1.0, 0.0):
        trainer = SelfTrainer(seg, data.labeled, data.probe, data.unlabeled, update_steps=1,
                              labeled_batch=2, pseudo_weight=1.0, pseudo_prior_dropout=chance)
        for row in (3, 4):
            trainer.add(row, np.ones((S, S), np.float32), np.ones((S, S), np.float32))
        trainer.update(np.random.default_rng(0))
    dropped, kept = seen
    assert (dropped[:2] == seg.config.no_prior_value).all()
    assert np.array_equal(kept[:2], data.unlabeled.priors[np.array([3, 4])])
    assert not (dropped[2:] == seg.config.no_prior_value).all()  # labeled rows keep theirs
    with pytest.raises(ValueError, match="pseudo_prior_dropout"):
        make_config(**tiny_env_kwargs("/tmp", pseudo_prior_dropout=1.5))
