"""The RefCOCO / RefCOCO+ / RefCOCOg loader on tiny data sets written in the exact refer format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from l2l_env.data import label_split, load_split
from l2l_env.data.refcoco import (AnnotationMask, ReferDataset, decode_segmentation, load_table,
                                  read_refs)
from refer_fixtures import (IMAGES, OVERLAP_PIXEL, PART_A, PART_B, ReferFixture, py2_pickle,
                            rect_polygon, write_instances, write_refer_fixture, write_refs)


@pytest.fixture
def refcoco(tmp_path: Path) -> ReferFixture:
    return write_refer_fixture(tmp_path, "refcoco", "unc")


def _record(table, ref_id: int):
    (rec,) = [r for r in table.refs if r.ref_id == ref_id]
    return rec


def _all_refs(fx: ReferFixture) -> dict[int, object]:
    ds = ReferDataset(fx.root, fx.dataset, fx.split_by)
    return {r.ref_id: r for split in ds.splits for r in ds.table(split).refs}


# --------------------------------------------------------------------------- masks

def test_every_annotation_kind_decodes_to_the_expected_mask(refcoco: ReferFixture) -> None:
    refs = _all_refs(refcoco)
    kinds_seen = set()
    for ref in refcoco.refs:
        mask = refs[ref["ref_id"]].load_mask()
        expected = refcoco.masks[ref["ann_id"]]
        assert mask.dtype == bool and mask.shape == expected.shape
        assert np.array_equal(mask, expected), refcoco.kinds[ref["ann_id"]]
        kinds_seen.add(refcoco.kinds[ref["ann_id"]])
    assert kinds_seen == {"polygon", "multipolygon", "rle", "compressed_rle"}


def test_overlapping_polygon_parts_are_merged_not_summed(refcoco: ReferFixture) -> None:
    h, w = IMAGES[9][1], IMAGES[9][0]
    # what a vendored refer copy does: decode every part, then np.sum over them
    parts = mask_utils.decode(mask_utils.frPyObjects([rect_polygon(*PART_A),
                                                      rect_polygon(*PART_B)], h, w))
    summed = np.sum(parts, axis=2)
    assert summed[OVERLAP_PIXEL] == 2  # the fixture's parts really overlap there

    rec = _record(load_table("refcoco", "train", refcoco.root), 2)
    raw = rec.mask()  # the lazy decoder itself, before RefRecord.load_mask casts
    assert raw.dtype == bool and raw.shape == (h, w)
    assert (raw.astype(np.uint8) == 1)[OVERLAP_PIXEL]  # how consumers read a refer mask
    mask = rec.load_mask()
    assert mask[OVERLAP_PIXEL]
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = PART_A, PART_B
    overlap = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union_area = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - overlap
    assert overlap > 0
    assert int(mask.sum()) == union_area
    assert int(summed.sum()) == union_area + overlap  # the summing bug double counts


def test_rle_counts_as_str_bytes_or_list_decode_alike() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((9, 7)) > 0.5
    compressed = mask_utils.encode(np.asfortranarray(truth.astype(np.uint8)))
    as_bytes = {"size": [9, 7], "counts": compressed["counts"]}
    as_str = {"size": [9, 7], "counts": compressed["counts"].decode()}
    flat = truth.flatten(order="F").astype(np.int8)
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]]))
    as_list = {"size": [9, 7], "counts": ([0] if flat[0] else []) + runs.tolist()}
    for seg in (as_bytes, as_str, as_list, [as_str, as_list]):
        assert np.array_equal(decode_segmentation(seg, 9, 7), truth)


def test_degenerate_polygon_parts_and_empty_segmentation() -> None:
    # a 4-number part would be read as a box by pycocotools; it has no area and is dropped
    mask = decode_segmentation([rect_polygon(1, 1, 4, 3), [0, 0, 5, 5]], 6, 6)
    assert int(mask.sum()) == 3 * 2
    assert not decode_segmentation([], 6, 6).any()


def test_bad_segmentations_raise_naming_the_annotation() -> None:
    with pytest.raises(ValueError, match=r"ann 7.*size \[4, 4\].*\[6, 6\]"):
        decode_segmentation({"size": [4, 4], "counts": [16]}, 6, 6, "ann 7")
    with pytest.raises(ValueError, match=r"ann 7.*sum to 30.*36"):
        decode_segmentation({"size": [6, 6], "counts": [10, 20]}, 6, 6, "ann 7")
    with pytest.raises(ValueError, match=r"ann 7.*odd|ann 7.*even"):
        decode_segmentation([[1, 1, 4, 1, 4]], 6, 6, "ann 7")
    with pytest.raises(ValueError, match="ann 7"):
        decode_segmentation(5, 6, 6, "ann 7")


def test_lazy_mask_is_picklable(refcoco: ReferFixture) -> None:
    rec = _record(load_table("refcoco", "train", refcoco.root), 2)
    assert isinstance(rec.mask, AnnotationMask)
    again = pickle.loads(pickle.dumps(rec.mask))
    assert np.array_equal(again(), refcoco.masks[102])


# --------------------------------------------------------------------------- records

def test_record_fields(refcoco: ReferFixture) -> None:
    table = load_table("refcoco", "train", refcoco.root)
    rec = _record(table, 2)
    assert rec.image_id == 9
    assert rec.box == tuple(float(v) for v in (20, 5, 24, 25))  # bbox of the union of both parts
    assert rec.sentences == ((3, "dog in the middle"), (4, "brown dog"))
    assert rec.category == "dog"
    # every annotation of image 9 (101, 102, 105 by annotation id), referent among them
    assert [o.category for o in rec.objects] == ["person", "dog", "dog"]
    assert rec.referent == 1 and rec.objects[rec.referent].box == rec.box
    assert all(o.attributes == {} for o in rec.objects)
    assert _record(table, 1).referent == 0 and _record(table, 1).objects is rec.objects


def test_images_are_rgb_uint8_at_record_size(refcoco: ReferFixture) -> None:
    tables = [load_table("refcoco", s, refcoco.root) for s in ("train", "testA")]
    for table in tables:
        for image_id in table.image_ids:
            img = table.load_image(image_id)
            w, h, _, _ = IMAGES[image_id]
            assert img.shape == (h, w, 3) and img.dtype == np.uint8
    gray = tables[0].load_image(25)  # grayscale JPEG: three equal channels
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert tables[1].load_image(42).shape == (24, 32, 3)  # RGBA PNG


# --------------------------------------------------------------------------- splits

@pytest.mark.parametrize("split,expected", [("train", [1, 2, 3, 7, 8, 9]), ("val", [4]),
                                            ("testA", [5]), ("testB", [6])])
def test_unc_splits(refcoco: ReferFixture, split: str, expected: list[int]) -> None:
    table = load_table("refcoco", split, refcoco.root)
    assert [r.ref_id for r in table.refs] == expected == refcoco.ref_ids(split)
    assert table.name == "refcoco" and table.split == split


def test_testA_keeps_testAB_as_refer_does(tmp_path: Path) -> None:
    fx = write_refer_fixture(tmp_path, "refcoco+", "unc", splits={5: "testAB"})
    assert [r.ref_id for r in load_table("refcoco+", "testA", fx.root).refs] == [5]
    assert [r.ref_id for r in load_table("refcoco+", "testB", fx.root).refs] == [5, 6]


def test_umd_and_google_splits(tmp_path: Path) -> None:
    umd = write_refer_fixture(tmp_path, "refcocog", "umd")
    assert [r.ref_id for r in load_table("refcocog", "test", tmp_path).refs] == [5, 6]
    assert [r.ref_id for r in load_table("refcocog", "val", tmp_path).refs] == [4]
    with pytest.raises(ValueError, match=r"unknown split 'testA'.*\('train', 'val', 'test'\)"):
        load_table("refcocog", "testA", tmp_path)
    write_refer_fixture(tmp_path, "refcocog", "google", splits={5: "val", 6: "train"})
    google = load_table("refcocog", "val", tmp_path, split_by="google")
    assert [r.ref_id for r in google.refs] == [4, 5]
    with pytest.raises(ValueError, match=r"unknown split 'test'.*google"):
        load_table("refcocog", "test", tmp_path, split_by="google")
    assert umd.refs_path.name == "refs(umd).p"


def test_empty_split_names_the_splits_present(tmp_path: Path) -> None:
    fx = write_refer_fixture(tmp_path, "refcoco", "unc", splits={6: "val"})
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p has no refs of split 'testB'.*'testA'"):
        load_table("refcoco", "testB", fx.root)


def test_modes_through_load_split(refcoco: ReferFixture) -> None:
    train = load_split("refcoco", "train", refcoco.root)
    assert train.mode == "per_ref" and len(train) == 6
    per_sentence = load_split("refcoco", "train", refcoco.root, mode="per_sentence")
    assert len(per_sentence) == 3 + 2 + 1 + 2 + 1 + 3
    val = load_split("refcoco", "val", refcoco.root)
    assert val.mode == "per_sentence" and len(val) == 2
    assert {s.phrase for s in val} == {"the car", "silver car on the road"}
    sample = val[0]
    assert sample.image.shape == (30, 36, 3) and np.array_equal(sample.mask, refcoco.masks[104])
    assert sample.sample_id == f"{sample.ref_id}:{sample.sent_id}"


def test_seeded_sentence_draw_per_epoch(refcoco: ReferFixture) -> None:
    def phrases(seed: int, epoch: int) -> list[str]:
        split = load_split("refcoco", "train", refcoco.root, sample_seed=seed, epoch=epoch)
        return [split.phrase(i) for i in range(len(split))]

    first = phrases(0, 0)
    assert phrases(0, 0) == first
    later = [phrases(0, e) for e in range(1, 6)]
    assert any(p != first for p in later)
    split = load_split("refcoco", "train", refcoco.root, sample_seed=0)
    split.set_epoch(3)
    assert [split.phrase(i) for i in range(len(split))] == later[2]
    # each drawn phrase is one of its ref's sentences
    for i, p in enumerate(first):
        ref, _ = split.record(i)
        assert p in {t for _, t in ref.sentences}


def test_label_split_over_table_images(refcoco: ReferFixture, tmp_path: Path) -> None:
    table = load_table("refcoco", "train", refcoco.root)
    assert table.image_ids == [9, 25, 60, 61, 62]
    split = label_split("refcoco", table.image_ids, 0.4, seed=1, split_dir=tmp_path / "splits")
    assert len(split.labeled) == 2
    assert sorted(split.labeled + split.unlabeled) == table.image_ids
    assert split.path is not None and split.path.name == "refcoco_40%_image.json"
    again = label_split("refcoco", table.image_ids, 0.4, seed=99, split_dir=tmp_path / "splits")
    assert again.labeled == split.labeled  # read back from the file
    labeled = table.subset(split.labeled)
    assert {r.image_id for r in labeled.refs} == set(split.labeled)
    assert len(labeled.refs) + len(table.subset(split.unlabeled).refs) == len(table.refs)


# --------------------------------------------------------------------------- options

def test_image_dir_override(tmp_path: Path) -> None:
    fx = write_refer_fixture(tmp_path / "data", image_dir=tmp_path / "coco" / "train2014")
    default = load_table("refcoco", "val", fx.root)
    with pytest.raises(FileNotFoundError, match=r"images/mscoco/images/train2014/"
                                                r"COCO_train2014_000000000030\.jpg"):
        default.load_image(30)
    table = load_table("refcoco", "val", fx.root, image_dir=fx.image_dir)
    assert table.load_image(30).shape == (30, 36, 3)
    assert len(load_split("refcoco", "val", fx.root, image_dir=str(fx.image_dir))[1].image) == 30


def test_parsed_files_are_cached_on_the_dataset_object(refcoco: ReferFixture) -> None:
    ds = ReferDataset(refcoco.root, "refcoco")
    ds.table("train")
    refcoco.refs_path.unlink()
    refcoco.instances_path.unlink()
    assert [r.ref_id for r in ds.table("val").refs] == [4]  # no re-read
    with pytest.raises(FileNotFoundError):
        ReferDataset(refcoco.root, "refcoco").table("val")


def test_python2_pickle_with_non_ascii_text(refcoco: ReferFixture) -> None:
    refs = [dict(r) for r in refcoco.refs]
    refs[3]["sentences"] = [{"sent_id": 40, "sent": "café car", "raw": "Café car",
                             "tokens": ["café", "car"]}]
    refcoco.refs_path.write_bytes(py2_pickle(refs))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(refcoco.refs_path.read_bytes())  # what a plain pickle.load meets
    assert load_table("refcoco", "val", refcoco.root).refs[0].sentences == ((40, "café car"),)


# --------------------------------------------------------------------------- errors

def test_data_root_required() -> None:
    with pytest.raises(ValueError, match=r"refcocog needs --data-root DIR containing "
                                         r"refcocog/instances.json and refcocog/refs\(umd\)\.p"):
        load_split("refcocog", "val")


def test_unknown_option_and_split_by(refcoco: ReferFixture) -> None:
    with pytest.raises(TypeError, match=r"unknown refcoco option\(s\) \['num_train'\].*split_by"):
        load_split("refcoco", "val", refcoco.root, num_train=3)
    with pytest.raises(ValueError,
                       match=r"unknown split_by 'umd' for refcoco.*\['unc', 'google'\]"):
        load_table("refcoco", "val", refcoco.root, split_by="umd")


def test_missing_files(refcoco: ReferFixture, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"refcoco\+/instances\.json does not exist"):
        load_table("refcoco+", "val", refcoco.root)  # only refcoco was written
    refcoco.refs_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\)\.p does not exist.*pickled list"):
        load_table("refcoco", "val", refcoco.root)


@pytest.mark.parametrize("content,match", [
    (b"not a pickle at all", r"is not a readable pickle.*expected a pickled list of ref dicts"),
    (pickle.dumps({"refs": []}, protocol=2), r"holds a dict; expected a pickled list"),
    (pickle.dumps([1, 2], protocol=2), r"entry 0 is a int"),
    (pickle.dumps([{"ref_id": 1, "ann_id": 2}], protocol=2),
     r"ref 0 \(ref_id 1\) lacks keys \['image_id', 'split', 'sentences'\]"),
    (pickle.dumps([{"ref": Path("x")}], protocol=2), r"not a readable pickle.*references pathlib"),
])
def test_corrupt_refs_pickle(refcoco: ReferFixture, content: bytes, match: str) -> None:
    refcoco.refs_path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        load_table("refcoco", "val", refcoco.root)
    assert str(refcoco.refs_path) in str(err.value)


def test_corrupt_instances_json(refcoco: ReferFixture) -> None:
    path = refcoco.instances_path
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"instances\.json is not valid JSON"):
        load_table("refcoco", "val", refcoco.root)
    write_instances(path, {k: v for k, v in refcoco.instances.items() if k != "annotations"})
    with pytest.raises(ValueError, match=r"instances\.json: key 'annotations' is missing"):
        load_table("refcoco", "val", refcoco.root)
    bad = dict(refcoco.instances, annotations=[{"id": 1}])
    write_instances(path, bad)
    with pytest.raises(ValueError, match=r"annotations entry 0 is not a dict with keys"):
        load_table("refcoco", "val", refcoco.root)


def test_refs_naming_unknown_annotation(refcoco: ReferFixture) -> None:
    refs = [dict(r) for r in refcoco.refs]
    refs[3]["ann_id"] = 999
    write_refs(refcoco.refs_path, refs)
    with pytest.raises(ValueError, match=r"ref 4 names ann_id 999, not in .*instances\.json"):
        load_table("refcoco", "val", refcoco.root)


def test_missing_or_corrupt_image(refcoco: ReferFixture) -> None:
    table = load_table("refcoco", "val", refcoco.root)
    path = refcoco.image_path(30)
    path.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=rf"cannot read image {path}"):
        table.load_image(30)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"COCO image {path} \(image_id 30\) does not"):
        load_split("refcoco", "val", refcoco.root)[0]


def test_read_refs_accepts_protocol_2_and_later(tmp_path: Path, refcoco: ReferFixture) -> None:
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"refs{protocol}.p"
        write_refs(path, refcoco.refs, protocol=protocol)
        assert read_refs(path) == refcoco.refs
