"""Streamed banks: the row sources give exactly the arrays the eager bank of earlier versions
held, for SynthRef and the refer fixture; the packed image cache is built once, atomically, and
read row by row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from l2l_env.bank import SampleBank, build_bank, concat_banks, pool_to_grid
from l2l_env.data import RefSplit, load_table
from l2l_env.priors import load_mistake_priors, load_priors
from l2l_env.rows import (DecodedImages, PackedImages, image_cache_path, image_store,
                          write_packed_images)
from refer_fixtures import write_refer_fixture
from segmenter.data import resize_images, resize_masks

S, G = 16, 4


def eager_bank(table, priors, image_size: int, grid_size: int, *, proposal: str = "box",
               with_masks: bool = True, distractors=None) -> dict:
    """The bank of version 18ddc66, every array computed up front (the reference); its
    distractors are the proposals of the ``distractors`` table."""
    split = RefSplit(table, "per_sentence")
    sample_ids, image_rows, mask_list, images, image_sizes = [], [], [], [], []
    image_cache: dict[int, int] = {}
    for i in range(len(split)):
        ref, pos = split.record(i)
        sent_id, _ = ref.sentences[pos]
        if ref.image_id not in image_cache:
            image_cache[ref.image_id] = len(images)
            image = table.load_image(ref.image_id)
            image_sizes.append(image.shape[:2])
            images.append(resize_images(image[None], image_size)[0])
        sample_ids.append(f"{ref.ref_id}:{sent_id}")
        image_rows.append(image_cache[ref.image_id])
        if with_masks:
            if pos == 0 or not mask_list:
                mask = resize_masks(ref.load_mask()[None], image_size)[0]
            mask_list.append(mask)
    maps = np.clip(np.asarray(priors.proposals(sample_ids, image_size, image_size, kind=proposal),
                              dtype=np.float32), 0.0, 1.0)
    out = {"images": np.stack(images)[np.array(image_rows)], "priors": maps,
           "prior_grid": pool_to_grid(maps, grid_size), "sample_ids": sample_ids,
           "masks": np.stack(mask_list) if with_masks else None}
    if distractors is not None:
        out["distractors"] = np.clip(np.asarray(distractors.proposals(
            sample_ids, image_size, image_size, kind=proposal), dtype=np.float32), 0.0, 1.0)
    return out


def assert_same(bank: SampleBank, ref: dict, rows: np.ndarray) -> None:
    assert bank.sample_ids == ref["sample_ids"]
    for name in ("images", "priors", "prior_grid", "masks", "distractors"):
        want = ref.get(name)
        if want is None:
            continue
        source = getattr(bank, name)
        assert source.shape == want.shape and source.dtype == want.dtype, name
        got = source[rows]
        assert got.dtype == want.dtype and np.array_equal(got, want[rows]), name
        assert np.array_equal(source[int(rows[0])], want[rows[0]]), name  # one row
        assert np.array_equal(np.asarray(source), want), name  # every row


@pytest.fixture(scope="module")
def synthref(l2l_cache):
    table = load_table("synthref", "train", data_root=l2l_cache, num_train=60, num_eval=10)
    priors = load_priors("synthref", "train", RefSplit(table), cache_dir=l2l_cache)
    return table, priors, load_mistake_priors("synthref", "train", RefSplit(table),
                                              cache_dir=l2l_cache, seed=3)


@pytest.fixture(scope="module")
def refer(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer")
    write_refer_fixture(root)
    cache = root / "cache"
    table = load_table("refcoco", "train", data_root=root)
    priors = load_priors("refcoco", "train", RefSplit(table), cache_dir=cache)
    return table, priors, cache, load_mistake_priors("refcoco", "train", RefSplit(table),
                                                     cache_dir=cache, seed=1)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_synthref_bank_equals_the_eager_arrays(synthref, l2l_cache, kind):
    table, priors, mistakes = synthref
    ref = eager_bank(table, priors, S, G, proposal=kind, distractors=mistakes)
    bank = build_bank(table, priors, S, G, proposal=kind, distractors=mistakes, cache_root=l2l_cache)
    assert isinstance(bank.images.store, PackedImages)
    rows = np.random.default_rng(0).permutation(len(bank))[:17]
    assert_same(bank, ref, rows)


def test_refer_bank_equals_the_eager_arrays(refer):
    table, priors, cache, mistakes = refer
    ref = eager_bank(table, priors, S, G, distractors=mistakes)
    bank = build_bank(table, priors, S, G, distractors=mistakes, cache_root=cache)
    rows = np.arange(len(bank))[::-1].copy()
    assert_same(bank, ref, rows)
    # images of another size than the input: resized once, into the cache
    assert {tuple(s) for s in bank.images.image_sizes()} != {(S, S)}


def test_take_and_concat_keep_rows(synthref, l2l_cache):
    table, priors, mistakes = synthref
    bank = build_bank(table, priors, S, G, cache_root=l2l_cache)
    ref = eager_bank(table, priors, S, G)
    rows = [r for g in bank.ref_rows[::2] for r in g]
    part = bank.take(rows)
    assert np.array_equal(part.images[:], ref["images"][rows])
    assert np.array_equal(part.masks[:], ref["masks"][rows])
    both = concat_banks(part, bank.take(bank.ref_rows[1]))
    want = np.concatenate([ref["priors"][rows], ref["priors"][bank.ref_rows[1]]])
    assert np.array_equal(both.priors[:], want)
    mixed = np.array([len(part), 0, len(part) - 1, len(both) - 1])
    assert np.array_equal(both.prior_grid[mixed], pool_to_grid(want[mixed], G))
    assert np.array_equal(both.priors.take(mixed)[:], want[mixed])
    with pytest.raises(IndexError):
        both.images[len(both)]


def test_image_cache_is_built_once_and_reused(refer):
    table, _, cache, _ = refer
    store = image_store(table.load_image, "refcoco", "train", table.image_ids, S, cache_root=cache)
    assert isinstance(store, PackedImages)
    stamp = os.stat(store.path).st_mtime_ns
    again = image_store(table.load_image, "refcoco", "train", table.image_ids, S, cache_root=cache)
    assert again.path == store.path and os.stat(again.path).st_mtime_ns == stamp
    other = image_store(table.load_image, "refcoco", "train", table.image_ids, 8, cache_root=cache)
    assert other.path != store.path  # keyed by size
    want = np.stack([resize_images(table.load_image(i)[None], S)[0] for i in table.image_ids])
    assert np.array_equal(store.read(np.arange(len(store))), want)


def test_interrupted_cache_build_leaves_no_file_and_a_cut_file_is_rebuilt(refer, tmp_path, capsys):
    table, _, _, _ = refer
    ids = table.image_ids
    path = image_cache_path(tmp_path, "refcoco", "train", S, ids, table.load_image.fingerprint())

    def failing(image_id: int) -> np.ndarray:
        if image_id == ids[-1]:
            raise KeyboardInterrupt
        return table.load_image(image_id)

    with pytest.raises(KeyboardInterrupt):
        write_packed_images(path, failing, ids, S)
    assert not path.exists() and not list(path.parent.iterdir())
    write_packed_images(path, table.load_image, ids, S)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="cut short"):
        PackedImages(path, ids)
    store = image_store(table.load_image, "refcoco", "train", ids, S, cache_root=tmp_path)
    assert "rebuilding" in capsys.readouterr().err
    assert path.read_bytes() == data and len(store) == len(ids)


def test_loader_without_fingerprint_decodes_on_demand(refer):
    table, _, _, _ = refer

    def load(image_id: int) -> np.ndarray:  # a plain function: no source to key a cache by
        return table.load_image(image_id)

    store = image_store(load, "refcoco", "train", table.image_ids, S)
    assert isinstance(store, DecodedImages)
    want = np.stack([resize_images(table.load_image(i)[None], S)[0] for i in table.image_ids])
    assert np.array_equal(store.read(np.array([2, 0, 2])), want[[2, 0, 2]])


def test_a_changed_image_file_changes_the_cache_key(tmp_path):
    fx = write_refer_fixture(tmp_path)
    table = load_table("refcoco", "train", data_root=tmp_path)
    before = table.load_image.fingerprint()
    image_id = table.image_ids[0]
    path: Path = fx.image_path(image_id)
    os.utime(path, ns=(1, 1))
    assert table.load_image.fingerprint() != before


def test_a_bank_holds_no_per_sentence_arrays_and_decodes_nothing_when_cached(refer, synthref,
                                                                              l2l_cache,
                                                                              monkeypatch):
    import tracemalloc

    table, priors, mistakes = synthref
    size = 256  # eager banks held ~1.4 MB per sentence at this size
    build_bank(table, priors, size, G, distractors=mistakes, cache_root=l2l_cache)  # packs the cache
    tracemalloc.start()
    bank = build_bank(table, priors, size, G, distractors=mistakes, cache_root=l2l_cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(bank) >= 60 and peak < 2_000_000  # metadata only
    rtable, rpriors, cache, _ = refer
    build_bank(rtable, rpriors, S, G, cache_root=cache)

    def no_decoding(image_id: int):
        raise AssertionError(f"image {image_id} was decoded although it is cached")

    monkeypatch.setattr(type(rtable.load_image), "__call__", lambda self, i: no_decoding(i))
    again = build_bank(rtable, rpriors, S, G, cache_root=cache)
    assert again.images[:].shape == (len(again), S, S, 3)
