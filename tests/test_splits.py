"""Semi-supervised label splits: seeded, by image, written and reused as published files."""

import json

import pytest

from l2l_env.data.splits import (choose_labeled_images, label_split, percent_label,
                                 read_split_file, split_filename)


def test_percent_labels_and_file_names():
    assert percent_label(0.05) == "5"
    assert percent_label(0.1) == "10"
    assert percent_label(0.005) == "0.5"
    assert split_filename("refcoco", 0.01) == "refcoco_1%_image.json"
    with pytest.raises(ValueError, match="label ratio"):
        percent_label(0.0)


def test_split_is_seeded_disjoint_and_complete():
    ids = list(range(100, 300))
    a = label_split("synthref", ids, 0.05, seed=3)
    b = label_split("synthref", ids, 0.05, seed=3)
    c = label_split("synthref", ids, 0.05, seed=4)
    assert a.labeled == b.labeled and a.labeled != c.labeled
    assert len(a.labeled) == 10
    assert set(a.labeled).isdisjoint(a.unlabeled)
    assert sorted(a.labeled + a.unlabeled) == ids
    assert len(choose_labeled_images([1, 2, 3], 0.01)) == 1  # never an empty labeled set


def test_full_ratio_labels_everything():
    s = label_split("synthref", [3, 1, 2], 1.0)
    assert s.labeled == (1, 2, 3) and s.unlabeled == () and s.path is None


def test_split_file_written_then_reused(tmp_path):
    ids = list(range(50))
    first = label_split("refcoco", ids, 0.1, seed=0, split_dir=tmp_path)
    path = tmp_path / "refcoco_10%_image.json"
    assert first.path == path and json.loads(path.read_text()) == list(first.labeled)
    # A published split dropped into the folder wins over the seed.
    path.write_text(json.dumps([7, 8, 9]))
    reused = label_split("refcoco", ids, 0.1, seed=0, split_dir=tmp_path)
    assert reused.labeled == (7, 8, 9) and 7 not in reused.unlabeled


def test_corrupt_or_wrong_split_file_errors_name_the_file(tmp_path):
    path = tmp_path / "synthref_5%_image.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="synthref_5%_image.json"):
        label_split("synthref", range(10), 0.05, split_dir=tmp_path)
    path.write_text(json.dumps({"ids": [1]}))
    with pytest.raises(ValueError, match="list of integer image ids"):
        read_split_file(path)
    path.write_text(json.dumps([1, 999]))
    with pytest.raises(ValueError, match="not in the train split"):
        read_split_file(path, known_ids=set(range(10)))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_split_file(tmp_path / "missing.json")
