"""SynthRef: determinism, caching, phrase uniqueness, split properties and the record contract."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from l2l_env.data import load_split
from l2l_env.data import load_table as registry_load_table
from l2l_env.data import synthref
from l2l_env.data.synthref import SPLITS, SynthRefConfig, load_arrays, load_table
from l2l_env.data.synthref_grammar import (ATTRIBUTES, COLOUR_WORDS, KINDS, SHAPE_WORDS,
                                           SIZE_WORDS, LogicalForm, SceneObject, evaluate, realise)
from l2l_env.data.synthref_render import SHAPES, shape_mask
from l2l_env.data.synthref_scene import sample_scene

TINY = {"num_train": 200, "num_eval": 50}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthref_cache")


@pytest.fixture(scope="module")
def data(root):
    return {split: load_arrays(split, root, **TINY) for split in SPLITS}


# --- determinism and caching -------------------------------------------------------------------

def test_same_config_gives_identical_data_and_other_seed_differs():
    cfg = SynthRefConfig(num_train=60, num_eval=20)
    a = synthref.generate_split(cfg, "val", progress=False)
    b = synthref.generate_split(cfg, "val", progress=False)
    for name in synthref.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.texts == b.texts and a.forms == b.forms and a.objects == b.objects
    c = synthref.generate_split(SynthRefConfig(num_train=60, num_eval=20, seed=1), "val",
                                progress=False)
    assert not np.array_equal(a.images[:3], c.images[:3])
    assert a.texts != c.texts


def test_second_load_reads_cache_without_generating(tmp_path, monkeypatch):
    first = load_arrays("testB", tmp_path, **TINY)
    npz, meta = synthref.split_paths(SynthRefConfig(**TINY), "testB", tmp_path)
    assert npz.exists() and meta.exists()

    def fail(*args, **kwargs):
        raise AssertionError("generate_split called although the split is cached")

    monkeypatch.setattr(synthref, "generate_split", fail)
    again = load_arrays("testB", tmp_path, **TINY)
    for name in synthref.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.texts == again.texts and first.forms == again.forms
    assert first.objects == again.objects
    with pytest.raises(AssertionError, match="generate_split called"):
        load_arrays("testB", tmp_path, **{**TINY, "seed": 5})  # another config: a cache miss


def test_cache_key_depends_on_config_and_version(tmp_path, monkeypatch):
    a, _ = synthref.split_paths(SynthRefConfig(**TINY), "val", tmp_path)
    b, _ = synthref.split_paths(SynthRefConfig(**TINY, image_size=48), "val", tmp_path)
    assert a.parent != b.parent and a.parent.parent == tmp_path / "synthref"
    monkeypatch.setattr(synthref, "GENERATOR_VERSION", synthref.GENERATOR_VERSION + 1)
    c, _ = synthref.split_paths(SynthRefConfig(**TINY), "val", tmp_path)
    assert c.parent != a.parent


# --- phrases --------------------------------------------------------------------------------------

def test_every_phrase_evaluates_to_exactly_its_referent(data):
    for split, d in data.items():
        for s, form in enumerate(d.forms):
            r = d.sent_ref_index[s]
            objects = d.objects[d.ref_image_index[r]]
            assert evaluate(form, objects, d.config.image_size) == (d.ref_object_index[r],), (
                split, d.texts[s], form)


def test_phrase_words_match_the_logical_form(data):
    words = {"colour": COLOUR_WORDS, "shape": SHAPE_WORDS, "size": SIZE_WORDS}
    for d in data.values():
        for text, form in zip(d.texts, d.forms):
            for name, value in form.filter + form.anchor:
                assert any(w in text for w in words[name][value]), (text, form)
            if form.kind == "relation":
                assert form.anchor and ("left" in text or "right" in text or "above" in text
                                        or "over" in text or "below" in text or "under" in text
                                        or "beneath" in text)


def test_all_phrase_kinds_occur_roughly_balanced(data):
    counts = Counter(data["train"].kinds)
    assert set(counts) == set(KINDS)
    assert min(counts.values()) >= 0.1 * len(data["train"].texts), counts


def test_refs_have_one_to_three_distinct_sentences_and_counts_are_exact(data):
    for split, d in data.items():
        assert len(d.texts) == (TINY["num_train"] if split == "train" else TINY["num_eval"])
        per_ref = np.bincount(d.sent_ref_index, minlength=len(d.ref_ids))
        assert per_ref.min() >= 1 and per_ref.max() <= 3
        per_image = np.bincount(d.ref_image_index, minlength=len(d.image_ids))
        assert per_image.min() >= 1 and per_image.max() <= 3
        for r in range(len(d.ref_ids)):
            texts = [d.texts[s] for s in np.flatnonzero(d.sent_ref_index == r)]
            assert len(set(texts)) == len(texts)


def test_evaluate_uses_margins_for_ambiguous_positions_and_relations():
    def obj(shape, colour, x, y, size="medium", w=8):
        return SceneObject(shape, colour, size, (x, y, w, w), w * w)

    left = LogicalForm("position", (("shape", "circle"),), position="left")
    far = [obj("circle", "red", 5, 30), obj("circle", "blue", 40, 30)]
    near = [obj("circle", "red", 20, 30), obj("circle", "blue", 23, 30)]
    assert evaluate(left, far, 64) == (0,)
    assert evaluate(left, near, 64) == (0, 1)  # 3 px apart: either could be meant
    below = LogicalForm("relation", (("shape", "circle"),), relation="below",
                        anchor=(("colour", "red"), ("shape", "star")))
    scene = [obj("star", "red", 28, 5), obj("circle", "blue", 28, 40),
             obj("circle", "green", 2, 8)]
    assert evaluate(below, scene, 64) == (1,)
    scene.append(obj("star", "red", 50, 50))  # the anchor is no longer unique
    assert evaluate(below, scene, 64) == ()
    largest = LogicalForm("superlative", (), extreme="largest")
    sizes = [obj("circle", "red", 5, 5, "large", 16), obj("square", "red", 40, 40, "small", 6)]
    assert evaluate(largest, sizes, 64) == (0,)
    sizes.append(obj("star", "red", 40, 5, "large", 15))  # two large ones: none clearly largest
    assert evaluate(largest, sizes, 64) == ()


def test_realise_is_seeded_and_unknown_kind_is_rejected():
    form = LogicalForm("ordinal", (("colour", "red"),), direction="left", index=2)
    a = [realise(form, np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1] and "second" in a[0] and "left" in a[0]
    with pytest.raises(ValueError, match="unknown phrase kind 'colourful'"):
        LogicalForm("colourful")


# --- scenes, masks and records --------------------------------------------------------------------

def test_shapes_render_centred_with_comparable_areas():
    areas = {}
    for shape in SHAPES:
        m = shape_mask(shape, 64, 32.0, 32.0, 10.0)
        ys, xs = np.nonzero(m)
        box_cx, box_cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        assert abs(box_cx - 32) <= 1.5 and abs(box_cy - 32) <= 1.5, shape  # box-centred
        assert xs.min() >= 32 - 13 and xs.max() < 32 + 13, shape  # within EXTENT * radius
        assert ys.min() >= 32 - 13 and ys.max() < 32 + 13, shape
        areas[shape] = m.sum()
    assert max(areas.values()) / min(areas.values()) < 1.7, areas
    assert len(set(map(bytes, (np.packbits(shape_mask(s, 64, 32, 32, 10)) for s in SHAPES))))\
        == len(SHAPES)


def test_objects_stay_mostly_visible_and_masks_match_labels():
    for i in range(20):
        scene = sample_scene(np.random.default_rng(i), 64, 6, "mix", min_visible=0.6)
        assert min(scene.visible_fraction) >= 0.6
        for k, o in enumerate(scene.objects):
            assert (scene.labels == k).sum() == o.area > 0
            # same-coloured objects never touch (8-neighbourhood), so a person sees the border
            near = np.zeros((66, 66), dtype=bool)
            for dy in range(3):
                for dx in range(3):
                    near[dy:dy + 64, dx:dx + 64] |= scene.labels == k
            near = near[1:65, 1:65]
            for j, p in enumerate(scene.objects):
                if j != k and p.colour == o.colour:
                    assert not (near & (scene.labels == j)).any()


def test_masks_nonempty_inside_their_boxes(data):
    for d in data.values():
        masks = d.masks()
        assert masks.dtype == bool and masks.shape == (len(d.ref_ids), 64, 64)
        for r, m in enumerate(masks):
            o = d.objects[d.ref_image_index[r]][d.ref_object_index[r]]
            ys, xs = np.nonzero(m)
            assert len(xs) == o.area > 0
            x, y, w, h = o.box
            assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == \
                (x, y, w, h)


def test_testA_referents_share_shape_and_testB_colour_with_a_distractor(data):
    def share(d, attr):
        out = []
        for img, obj in zip(d.ref_image_index, d.ref_object_index):
            objs = d.objects[img]
            out.append(any(j != obj and getattr(o, attr) == getattr(objs[obj], attr)
                           for j, o in enumerate(objs)))
        return np.array(out)

    assert share(data["testA"], "shape").all()
    assert share(data["testB"], "colour").all()
    train_shape = share(data["train"], "shape")
    assert 0 < train_shape.mean() < 1  # a natural mix, unlike testA


def test_ids_unique_across_splits(data):
    for field in ("image_ids", "ref_ids", "sent_ids"):
        ids = np.concatenate([getattr(d, field) for d in data.values()])
        assert len(np.unique(ids)) == len(ids), field


def test_table_records_carry_objects_attributes_and_boxes(root, data):
    table = load_table("val", root, **TINY)
    assert table.name == "synthref" and table.split == "val"
    assert table.num_sentences() == TINY["num_eval"]
    d = data["val"]
    for r, rec in enumerate(table.refs):
        objs = d.objects[d.ref_image_index[r]]
        assert len(rec.objects) == len(objs) and rec.referent == d.ref_object_index[r]
        ref = rec.objects[rec.referent]
        assert rec.box == ref.box and rec.category == ref.category == ref.attributes["shape"]
        for info, o in zip(rec.objects, objs):
            assert set(info.attributes) == set(ATTRIBUTES)
            assert (info.attributes["colour"], info.attributes["size"]) == (o.colour, o.size)
            assert info.box == tuple(float(b) for b in o.box)
        np.testing.assert_array_equal(rec.load_mask(), d.masks([r])[0])
    image = table.load_image(table.refs[0].image_id)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_load_split_samples_and_image_size_option(tmp_path, root):
    samples = load_split("synthref", "testA", root, **TINY)
    s = samples[0]
    assert len(samples) == TINY["num_eval"]
    assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (64, 64) and s.mask.dtype == bool and s.mask.any()
    assert s.objects[s.referent].box == s.box
    small = registry_load_table("synthref", "val", tmp_path, num_train=20, num_eval=10,
                                image_size=48)
    assert small.load_image(small.refs[0].image_id).shape == (48, 48, 3)
    assert small.refs[0].load_mask().shape == (48, 48)


def test_unknown_option_and_bad_values_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError,
                       match=r"unknown SynthRef option\(s\) \['num_trian'\].*num_train"):
        load_table("train", tmp_path, num_trian=10)
    with pytest.raises(ValueError, match="num_trian"):
        load_split("synthref", "train", tmp_path, num_trian=10)
    with pytest.raises(ValueError, match="unknown SynthRef split 'test'"):
        load_arrays("test", tmp_path, **TINY)
    with pytest.raises(ValueError, match="min_objects"):
        SynthRefConfig(min_objects=5, max_objects=3)
