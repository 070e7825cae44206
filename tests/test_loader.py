"""The batch loader: with worker processes the training batches (supervised ``fit`` and the
self-trainer's updates) are the same as without, so training is too; ``num_workers`` is a config
key of the env and the run; a CUDA device without CUDA is refused before any data is loaded."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import l2l_env
from env_fixtures import tiny_env_kwargs
from l2l_env.config import make_config
from l2l_env.factory import build_segmenter
from l2l_env.loop_data import load_loop_data
from l2l_env.self_training import SelfTrainer
from segmenter import fit
from segmenter.shared.loader import BatchLoader

pytestmark = pytest.mark.usefixtures("one_thread")


def _square(key: int) -> dict:
    return {"key": key, "value": np.full((2, 3), key, np.float32) ** 2}


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_in_key_order_and_passes_can_stop_early(workers):
    loader = BatchLoader(_square, num_workers=workers)
    first = loader.batches(range(10))
    got = [next(first)["key"] for _ in range(3)]
    first.close()  # a pass left early; the next one starts clean
    second = [b["key"] for b in loader.batches([7, 2, 9])]
    assert got == [0, 1, 2] and second == [7, 2, 9]
    assert np.array_equal(next(iter(loader.batches([4])))["value"], np.full((2, 3), 16.0))
    loader.close()
    with pytest.raises(ValueError, match="num_workers"):
        BatchLoader(_square, num_workers=-1)


@pytest.fixture(scope="module")
def parts(l2l_cache, one_thread):
    seg_kwargs = {**tiny_env_kwargs(l2l_cache)["segmenter"], "prior_swap": 0.5}
    cfg = make_config(**tiny_env_kwargs(l2l_cache, segmenter=seg_kwargs))
    seg = build_segmenter(cfg)
    data = load_loop_data(cfg, int(seg.config.image_size), distractors=True)
    return cfg, data


def _spy(seg, seen: list) -> None:
    real = seg.train_step

    def spy(images, priors, phrases, targets, weights, **extra):
        seen.append((np.array(images), np.array(priors), list(phrases), np.array(targets),
                     None if weights is None else np.array(weights),
                     None if extra.get("objects") is None else np.array(extra["objects"])))
        return real(images, priors, phrases, targets, weights, **extra)

    seg.train_step = spy


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        all((x is None and y is None) or (isinstance(x, list) and x == y)
            or (isinstance(x, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y))
            for x, y in zip(p, q)) for p, q in zip(a, b))


def test_fit_with_workers_trains_on_the_same_batches(parts):
    cfg, data = parts
    lab = data.labeled
    runs = {}
    for workers in (0, 2):
        seg = build_segmenter(cfg)
        seen: list = []
        _spy(seg, seen)
        fit(seg, lab.images, lab.priors, lab.phrases, lab.masks, steps=4, batch_size=5, seed=3,
            progress=False, alt_priors=lab.distractors, num_workers=workers)
        runs[workers] = (seen, seg.state_dict()["model"])
    assert len(runs[0][0]) == 4 and _same(runs[0][0], runs[2][0])
    a, b = runs[0][1], runs[2][1]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_self_trainer_updates_with_workers_are_the_same(parts):
    cfg, data = parts
    S = None
    runs = {}
    for workers in (0, 2):
        seg = build_segmenter(cfg)
        S = int(seg.config.image_size)
        seen: list = []
        _spy(seg, seen)
        trainer = SelfTrainer(seg, data.labeled, data.probe, data.unlabeled, update_steps=3,
                              labeled_batch=4, pseudo_weight=0.5, num_workers=workers)
        rng = np.random.default_rng(5)
        stats = []
        for update in range(2):
            for row in (3 + update, 11, 20):
                label = np.zeros((S, S), np.float32)
                label[: row % S] = 1.0
                trainer.add(row, label, np.ones((S, S), np.float32))
            stats.append(trainer.update(rng))
        runs[workers] = (seen, stats, rng.bit_generator.state, seg.state_dict()["model"])
        trainer.loader().close()
    assert len(runs[0][0]) == 6 and _same(runs[0][0], runs[2][0])
    assert runs[0][1] == runs[2][1] and runs[0][2] == runs[2][2]
    a, b = runs[0][3], runs[2][3]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_num_workers_is_a_checked_config_key(l2l_cache):
    assert make_config(**tiny_env_kwargs(l2l_cache, num_workers=2)).num_workers == 2
    with pytest.raises(ValueError, match="num_workers=-1"):
        make_config(**tiny_env_kwargs(l2l_cache, num_workers=-1))
    from experiments import config as C

    cfg = C.load_config(None, {}, ["num_workers=3"])
    assert C.env_kwargs(cfg)["num_workers"] == 3
    with pytest.raises(ValueError, match="num_workers"):
        C.validate(C.load_config(None, {}, ["num_workers=-2"]), check_paths=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_without_cuda_fails_before_any_data_is_loaded(l2l_cache, monkeypatch):
    import l2l_env.factory as factory

    def no_data(*args, **kwargs):
        raise AssertionError("data were loaded before the device was checked")

    monkeypatch.setattr(factory, "prepare_parts", no_data)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, device="cuda"))


def test_env_with_workers_steps_exactly_like_without(l2l_cache):
    from gymnasium.utils.env_checker import data_equivalence

    runs = []
    for workers in (0, 2):
        env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache, num_workers=workers,
                                                         episode_steps=100))
        obs, _ = env.reset(seed=4)
        rng = np.random.default_rng(1)
        out = [obs]
        for _ in range(20):  # two updates and their prediction windows, prepared ahead
            out.append(env.step(rng.integers(0, 4, env.action_space.shape))[:4])
        runs.append(out)
        env.close()
    assert data_equivalence(runs[0], runs[1], exact=True)


@pytest.mark.filterwarnings("ignore:.*pin_memory.*:UserWarning")
def test_pinned_batches_come_back_as_the_same_arrays():
    plain = list(BatchLoader(_square, num_workers=0).batches(range(3)))
    pinned = list(BatchLoader(_square, num_workers=1, pin_memory=True).batches(range(3)))
    assert [b["key"] for b in pinned] == [0, 1, 2]
    assert all(isinstance(b["value"], np.ndarray) and np.array_equal(a["value"], b["value"])
               for a, b in zip(plain, pinned))
