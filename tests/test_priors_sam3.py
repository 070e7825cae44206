"""The ``sam3`` provider (a phrase -> mask prior with its score) on a tiny random SAM 3 loaded by
path, and the mask prior itself: RLE in the grounding and the cache, the ``mask`` proposal.
The SAM 3 processor of transformers needs torchvision: the model tests skip without it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from l2l_env.data.types import ReferringSample
from l2l_env.priors import make_provider
from l2l_env.priors.base import Grounding, decode_mask, encode_mask, mask_box
from l2l_env.priors.cache import compute_priors, read_priors
from l2l_env.priors.proposals import NO_PRIOR_VALUE, soft_proposals, to_soft_proposal
from l2l_env.priors.sam3 import Sam3Grounder
from mllm_fixtures import build_sam3


def _mask(h=40, w=60) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:30, 20:50] = True
    m[12:16, 24:30] = False  # not a box: a hole
    return m


def test_a_mask_grounding_round_trips_through_json():
    m = _mask()
    g = Grounding(box=mask_box(m), score=0.7, image_size=m.shape, mask=encode_mask(m))
    assert g.box == (20.0, 10.0, 30.0, 20.0)
    back = Grounding.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g and np.array_equal(decode_mask(back.mask, back.image_size), m)
    with pytest.raises(ValueError, match="needs image_size"):
        Grounding(box=(0, 0, 1, 1), mask=g.mask)
    with pytest.raises(ValueError, match="'mask' must be an RLE counts string"):
        Grounding.from_dict({"box": [0, 0, 1, 1], "mask": [1, 2]})


def test_mask_proposal_renders_the_mask_else_the_box():
    m = _mask()
    g = Grounding(box=mask_box(m), score=0.5, image_size=m.shape, mask=encode_mask(m))
    p = to_soft_proposal(g, 40, 60, kind="mask")
    np.testing.assert_allclose(p, m.astype(np.float32), atol=1e-6)  # same size: the mask itself
    small = to_soft_proposal(g, 20, 30, kind="mask")
    assert small.shape == (20, 30) and small[10, 17] == pytest.approx(1.0)
    assert 0.0 < small[6, 12] < 1.0  # the hole's edge is soft after shrinking
    blended = to_soft_proposal(g, 40, 60, kind="mask", confidence=True)
    np.testing.assert_allclose(blended, NO_PRIOR_VALUE + (m - NO_PRIOR_VALUE) * 0.5, atol=1e-6)
    boxed = Grounding(box=(20.0, 10.0, 30.0, 20.0), image_size=(40, 60))
    np.testing.assert_allclose(soft_proposals([boxed], 40, 60, "mask"),
                               soft_proposals([boxed], 40, 60, "box"))
    flat = soft_proposals([Grounding(box=None, score=0.0)], 8, 8, "mask")
    assert np.all(flat == NO_PRIOR_VALUE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("torchvision", reason="the SAM 3 processor of transformers needs it")
    return build_sam3(tmp_path_factory.mktemp("sam3"))


def _samples() -> list[ReferringSample]:
    rng = np.random.default_rng(5)
    sizes, phrases = [(70, 100), (48, 64), (50, 120)], ["the red dog", "man with a hat", "a"]
    return [ReferringSample(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                            mask=np.zeros((h, w), bool), phrase=p, image_id=i, ref_id=i,
                            sent_id=i, box=(0.0, 0.0, 1.0, 1.0))
            for i, ((h, w), p) in enumerate(zip(sizes, phrases))]


def test_sam3_segments_the_phrase_with_its_score(checkpoint):
    grounder = make_provider("sam3", model=str(checkpoint), batch_size=2)
    assert isinstance(grounder, Sam3Grounder) and grounder.config()["name"] == "sam3"
    samples = _samples()
    out = grounder.ground_batch(samples)
    for g, s in zip(out, samples):
        assert g.image_size == s.image.shape[:2] and 0.0 <= g.score <= 1.0
        if not g.no_prior:
            mask = decode_mask(g.mask, g.image_size)
            assert mask.any() and mask_box(mask) == g.box
    assert any(not g.no_prior for g in out)
    # The score is the best query's detection probability times the presence probability.
    s = samples[0]
    inputs = grounder.processor(images=[s.image], text=[s.phrase], return_tensors="pt")
    inputs.pop("original_sizes")
    with torch.inference_mode():
        o = grounder.model(**inputs)
    expected = (o.pred_logits.sigmoid() * o.presence_logits.sigmoid()).max()
    assert out[0].score == pytest.approx(float(expected), abs=1e-4)
    one = Sam3Grounder(checkpoint, batch_size=1).ground_batch(samples)
    assert [g.mask for g in one] == [g.mask for g in out]
    assert [g.score for g in one] == pytest.approx([g.score for g in out], abs=1e-4)


def test_sam3_masks_reach_the_cache_and_the_mask_proposal(checkpoint, tmp_path):
    samples = _samples()
    grounder = Sam3Grounder(checkpoint, threshold=0.0)
    result = compute_priors(grounder, samples, tmp_path / "p.jsonl")
    assert result.computed == 3
    cached = read_priors(tmp_path / "p.jsonl").groundings
    direct = grounder.ground_batch(samples)
    assert [cached[s.sample_id] for s in samples] == direct
    g = next(g for g in direct if not g.no_prior)
    p = to_soft_proposal(g, *g.image_size, kind="mask")
    np.testing.assert_allclose(p, decode_mask(g.mask, g.image_size).astype(np.float32), atol=1e-6)
    none = Sam3Grounder(checkpoint, threshold=1.0).ground_batch(samples[:1])[0]
    assert none.no_prior and none.mask is None and "< 1.0" in none.raw


def test_sam3_wrong_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAM 3 checkpoint folder .* does not exist"):
        Sam3Grounder(tmp_path / "nowhere")
    (tmp_path / "sam2").mkdir()
    (tmp_path / "sam2" / "config.json").write_text('{"model_type": "sam2"}')
    with pytest.raises(ValueError, match=r"sam2/config.json: model_type 'sam2'.*\['sam3'\]"):
        Sam3Grounder(tmp_path / "sam2")
