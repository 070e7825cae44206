"""Object-attribute targets: the labeled images' annotated objects, per pixel, for the
segmenter's object-attribute heads; never built for unlabeled images."""

from __future__ import annotations

import numpy as np
import pytest

from env_fixtures import record_training, tiny_env_kwargs
from l2l_env.bank import build_bank
from l2l_env.config import make_config
from l2l_env.data import RefSplit, load_table, synthref
from l2l_env.factory import build_segmenter, segmenter_config
from l2l_env.loop_data import load_loop_data
from l2l_env.objects import object_vocabulary
from l2l_env.priors import load_priors
from l2l_env.self_training import SelfTrainer
from refer_fixtures import write_refer_fixture
from segmenter.config import UNKNOWN_CLASS

pytestmark = pytest.mark.usefixtures("one_thread")
ATTRIBUTES = ["shape", "colour", "size"]


@pytest.fixture(scope="module")
def synth(l2l_cache):
    table = load_table("synthref", "train", data_root=l2l_cache, num_train=60, num_eval=10)
    priors = load_priors("synthref", "train", RefSplit(table), cache_dir=l2l_cache)
    return table, priors


def test_synthref_object_rows_are_the_scene_label_maps(synth, l2l_cache):
    table, priors = synth
    vocabulary = object_vocabulary(table, ATTRIBUTES)
    assert vocabulary["size"] == sorted(vocabulary["size"]) and len(vocabulary["shape"]) >= 2
    bank = build_bank(table, priors, 64, 8, objects=vocabulary, cache_root=l2l_cache)
    assert bank.objects.shape == (len(bank), 3, 64, 64) and bank.objects.dtype == np.int8
    arrays = synthref.load_arrays("train", l2l_cache, num_train=60, num_eval=10)
    image_row = {int(i): k for k, i in enumerate(arrays.image_ids.tolist())}
    ref_image = {r.ref_id: r.image_id for r in table.refs}
    rows = np.arange(0, len(bank), 7)
    got = bank.objects[rows]
    for i, row in enumerate(rows):
        img = image_row[ref_image[int(bank.sample_ids[row].split(":")[0])]]
        labels = arrays.labels[img].astype(np.int64)  # -1 background, k = object k
        for h, attribute in enumerate(ATTRIBUTES):
            classes = np.array([0] + [vocabulary[attribute].index(getattr(o, attribute)) + 1
                                      for o in arrays.objects[img]])
            assert np.array_equal(got[i, h], classes[labels + 1]), (row, attribute)


def test_refer_object_rows_paint_every_annotation_smaller_on_top(tmp_path):
    write_refer_fixture(tmp_path)
    table = load_table("refcoco", "train", data_root=tmp_path)
    priors = load_priors("refcoco", "train", RefSplit(table), cache_dir=tmp_path / "cache")
    vocabulary = object_vocabulary(table, ["category"])
    assert vocabulary == {"category": sorted({o.category for r in table.refs for o in r.objects})}
    S = 32
    bank = build_bank(table, priors, S, 4, objects=vocabulary, cache_root=tmp_path / "cache")
    from segmenter.data import resize_masks

    seen = set()
    for row, sample in enumerate(bank.sample_ids):
        ref = next(r for r in table.refs if r.ref_id == int(sample.split(":")[0]))
        if ref.image_id in seen:
            continue
        seen.add(ref.image_id)
        got = bank.objects[row][0]
        masks = resize_masks(np.stack([o.load_mask() for o in ref.objects]), S)
        covered = masks.sum(0)
        assert (got[covered == 0] == 0).all()
        for obj, mask in zip(ref.objects, masks):
            alone = mask & (covered == 1)
            assert (got[alone] == vocabulary["category"].index(obj.category) + 1).all()
        smallest = int(np.argmin([m.sum() if m.any() else 1e9 for m in masks]))
        assert (got[masks[smallest]] ==
                vocabulary["category"].index(ref.objects[smallest].category) + 1).all()


def test_a_missing_attribute_or_unlabeled_objects_are_errors(synth, l2l_cache):
    table, priors = synth
    with pytest.raises(ValueError, match=r"'hat'.*colour"):
        object_vocabulary(table, ["hat"])
    with pytest.raises(ValueError, match="with_masks"):
        build_bank(table, priors, 64, 8, with_masks=False, objects={"shape": ["circle"]},
                   cache_root=l2l_cache)


def test_only_the_labeled_bank_carries_objects_and_updates_train_the_heads(l2l_cache):
    kwargs = tiny_env_kwargs(l2l_cache, object_attributes=ATTRIBUTES)
    cfg = make_config(**kwargs)
    seg_cfg = segmenter_config(cfg)
    assert len(seg_cfg.object_classes) == 3 and min(seg_cfg.object_classes) >= 2
    seg = build_segmenter(cfg)
    data = load_loop_data(cfg, int(seg.config.image_size))
    assert data.labeled.objects is not None and data.unlabeled.objects is None
    seen = record_training(seg, lambda objects, **_: objects.copy())
    trainer = SelfTrainer(seg, data.labeled, data.probe, data.unlabeled, update_steps=1,
                          labeled_batch=3, pseudo_weight=1.0)
    S = int(seg.config.image_size)
    trainer.add(2, np.ones((S, S), np.float32), np.ones((S, S), np.float32))
    trainer.update(np.random.default_rng(0))
    rows = np.random.default_rng(0).choice(len(data.labeled), size=3, replace=False)
    assert len(seen) == 1 and seen[0].shape == (4, 3, S, S)
    assert (seen[0][0] == UNKNOWN_CLASS).all()  # the pseudo-labeled row: no object targets
    assert np.array_equal(seen[0][1:], data.labeled.objects[rows])


def test_object_classes_that_disagree_with_the_vocabulary_are_an_error(l2l_cache):
    kwargs = tiny_env_kwargs(l2l_cache, object_attributes=["shape"])
    kwargs["segmenter"] = {**kwargs["segmenter"], "object_classes": [99]}
    with pytest.raises(ValueError, match=r"object_classes=\[99\]"):
        segmenter_config(make_config(**kwargs))


def test_object_targets_without_heads_are_an_error(tiny_segmenter):
    from segmenter import Segmenter, SegmenterConfig

    seg = Segmenter(SegmenterConfig(**tiny_segmenter))
    S = seg.config.image_size
    images = np.zeros((2, S, S, 3), np.uint8)
    with pytest.raises(ValueError, match="object_classes"):
        seg.train_step(images, None, ["a", "b"], np.zeros((2, S, S), np.float32),
                       objects=np.zeros((2, 1, S, S), np.int8))


def test_each_data_set_names_its_own_object_attributes_unless_told():
    assert make_config().resolved_object_attributes() == ATTRIBUTES
    refer = make_config(dataset="refcoco", data_root="data/refer")
    assert refer.resolved_object_attributes() == ["category"]
    assert make_config(object_attributes=[]).resolved_object_attributes() == []
    with pytest.raises(ValueError, match="object_attributes"):
        make_config(object_attributes=["shape", "shape"])
