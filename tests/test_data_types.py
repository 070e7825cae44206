"""RefSplit: per-ref (training) and per-sentence (evaluation) sampling over one RefTable."""

import numpy as np
import pytest

from l2l_env.data.types import ObjectInfo, RefRecord, RefSplit, RefTable


def _table(num_refs=6, sentences=3):
    images = {i: np.full((4, 5, 3), i, np.uint8) for i in range(3)}
    refs = [RefRecord(ref_id=10 + r, image_id=r % 3, box=(0, 0, 2, 2),
                      sentences=tuple((100 * r + s, f"ref {r} sentence {s}") for s in range(sentences)),
                      mask=(lambda r=r: np.eye(4, 5, k=r % 2, dtype=bool)),
                      objects=(ObjectInfo((0, 0, 2, 2), "square"),), referent=0)
            for r in range(num_refs)]
    return RefTable("toy", "train", refs, lambda i: images[i])


def test_per_sentence_yields_every_sentence_once():
    split = RefSplit(_table(), "per_sentence")
    assert len(split) == 18
    ids = [split[i].sample_id for i in range(len(split))]
    assert len(set(ids)) == 18
    s = split[4]
    assert s.image.shape == (4, 5, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (4, 5) and s.mask.dtype == bool
    assert s.phrase == "ref 1 sentence 1" and s.ref_id == 11 and s.image_id == 1


def test_per_ref_draws_a_seeded_sentence_per_epoch():
    split = RefSplit(_table(num_refs=40), "per_ref", seed=0)
    assert len(split) == 40
    epoch0 = [split.phrase(i) for i in range(40)]
    assert epoch0 == [RefSplit(_table(num_refs=40), "per_ref", seed=0).phrase(i) for i in range(40)]
    split.set_epoch(1)
    epoch1 = [split.phrase(i) for i in range(40)]
    assert epoch0 != epoch1
    assert all(p.startswith(f"ref {i} ") for i, p in enumerate(epoch1))


def test_indexing_slicing_subset_and_errors():
    split = RefSplit(_table(), "per_sentence")
    assert [s.sample_id for s in split[1:3]] == [split[1].sample_id, split[2].sample_id]
    assert split[-1].sample_id == split[len(split) - 1].sample_id
    with pytest.raises(IndexError):
        split[len(split)]
    with pytest.raises(ValueError, match="mode"):
        RefSplit(_table(), "per_image")
    sub = split.table.subset({0})
    assert {r.image_id for r in sub.refs} == {0} and sub.image_ids == [0]
