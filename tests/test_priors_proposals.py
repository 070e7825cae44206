"""Soft proposals: shapes, ranges, monotonicity, scaling, the no-prior map, batch = single."""

from __future__ import annotations

import numpy as np
import pytest

from l2l_env.priors import (NO_PRIOR, NO_PRIOR_VALUE, PROPOSALS, Grounding, proposal_maps,
                            soft_proposals, to_soft_proposal)

BOX = Grounding(box=(8.0, 4.0, 16.0, 20.0), score=0.8)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_shape_dtype_range(kind):
    m = to_soft_proposal(BOX, 32, 40, kind)
    assert m.shape == (32, 40) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0
    assert m.max() > 0.95 and m.min() < 0.05


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_no_prior_is_flat_half(kind):
    m = to_soft_proposal(NO_PRIOR, 16, 24, kind)
    assert m.shape == (16, 24) and np.all(m == NO_PRIOR_VALUE) and NO_PRIOR_VALUE == 0.5
    batch = soft_proposals([BOX, Grounding(box=None, parsed=False), BOX], 16, 16, kind)
    assert np.all(batch[1] == 0.5) and not np.all(batch[0] == 0.5)


def test_box_is_high_inside_low_outside_and_monotone_across_edges():
    m = to_soft_proposal(BOX, 32, 32, "box")
    inside = m[7:21, 11:21]  # well inside rows 4..24, cols 8..24
    assert inside.min() > 0.9
    assert m[:2].max() < 0.1 and m[:, 27:].max() < 0.1
    assert m[14, 8] > 0.25 and m[14, 8] < 0.75  # about 0.5 on the edge
    row = m[14]
    assert np.all(np.diff(row[:16]) >= -1e-7) and np.all(np.diff(row[16:]) <= 1e-7)
    # thresholded at 0.5 it is the box, up to its edge pixels
    sel = m > 0.5
    truth = np.zeros_like(sel)
    truth[4:24, 8:24] = True
    assert (sel & truth).sum() / (sel | truth).sum() > 0.85


def test_gaussian_peaks_at_centre_and_decreases_outwards():
    m = to_soft_proposal(BOX, 32, 32, "gaussian")
    cy, cx = np.unravel_index(np.argmax(m), m.shape)
    assert abs(cx + 0.5 - 16) <= 1 and abs(cy + 0.5 - 14) <= 1
    assert np.all(np.diff(m[cy, cx:]) <= 1e-7) and np.all(np.diff(m[cy, : cx + 1]) >= -1e-7)
    # the 0.5 contour is the inscribed ellipse: inside the box, touching its sides
    sel = m > 0.5
    assert not sel[:4].any() and not sel[24:].any()
    assert not sel[:, :8].any() and not sel[:, 24:].any()
    assert sel[14, 9] and sel[5, 16]


def test_points_centre_the_gaussian():
    g = Grounding(box=(0.0, 0.0, 32.0, 32.0), points=((4.0, 28.0),))
    m = to_soft_proposal(g, 32, 32, "gaussian")
    cy, cx = np.unravel_index(np.argmax(m), m.shape)
    assert (cx, cy) == (3, 27) or (abs(cx - 3.5) <= 1 and abs(cy - 27.5) <= 1)


def test_boxes_scale_from_image_size_to_map_size():
    g = Grounding(box=(32.0, 16.0, 64.0, 32.0), image_size=(128, 128))
    small = to_soft_proposal(g, 32, 32)
    plain = to_soft_proposal(Grounding(box=(8.0, 4.0, 16.0, 8.0)), 32, 32)
    np.testing.assert_allclose(small, plain, atol=1e-6)
    # the image_size argument serves groundings without their own
    sized = to_soft_proposal(Grounding(box=g.box), 32, 32, image_size=(128, 128))
    np.testing.assert_allclose(sized, plain, atol=1e-6)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_batch_equals_single(kind):
    rng = np.random.default_rng(0)
    gs = [Grounding(box=tuple(float(v) for v in rng.uniform(1, 30, 4)), score=float(rng.random()),
                    image_size=(int(rng.integers(40, 90)), int(rng.integers(40, 90))))
          for _ in range(20)] + [NO_PRIOR]
    batch = soft_proposals(gs, 24, 20, kind)
    assert batch.shape == (21, 24, 20) and batch.dtype == np.float32
    for i, g in enumerate(gs):
        np.testing.assert_allclose(batch[i], to_soft_proposal(g, 24, 20, kind), atol=1e-6)


def test_confidence_blends_towards_half():
    lo = to_soft_proposal(Grounding(box=BOX.box, score=0.2), 32, 32, confidence=True)
    hi = to_soft_proposal(Grounding(box=BOX.box, score=1.0), 32, 32, confidence=True)
    assert np.abs(lo - 0.5).max() < 0.11 and np.abs(hi - 0.5).max() > 0.45


def test_array_form_and_unknown_kind():
    boxes = np.array([[8, 4, 16, 20], [np.nan] * 4], dtype=float)
    maps = proposal_maps(boxes, 32, 32, "box")
    np.testing.assert_allclose(maps[0], to_soft_proposal(BOX, 32, 32), atol=1e-6)
    assert np.all(maps[1] == 0.5)
    with pytest.raises(ValueError, match="unknown proposal kind 'blob'"):
        to_soft_proposal(BOX, 8, 8, "blob")
    with pytest.raises(ValueError, match="positive"):
        proposal_maps(boxes, 0, 8)


def test_sam_kind_plugs_in_by_name_with_a_given_proposer():
    assert "sam" in PROPOSALS
    calls = []

    def proposer(image, grounding, height, width):
        calls.append((image.shape, grounding.box, height, width))
        return np.full((height, width), 2.0)  # out of range on purpose: clipped

    image = np.zeros((40, 40, 3), np.uint8)
    m = to_soft_proposal(BOX, 10, 12, "sam", image=image, proposer=proposer)
    assert m.shape == (10, 12) and m.dtype == np.float32 and m.max() == 1.0
    assert calls == [((40, 40, 3), BOX.box, 10, 12)]
    flat = to_soft_proposal(NO_PRIOR, 10, 12, "sam", image=image, proposer=proposer)
    assert np.all(flat == 0.5) and len(calls) == 1
    batch = soft_proposals([BOX, NO_PRIOR], 10, 12, "sam", images=[image, image], proposer=proposer)
    assert batch.shape == (2, 10, 12) and np.all(batch[1] == 0.5)
    with pytest.raises(ValueError, match="model_path"):
        to_soft_proposal(BOX, 10, 12, "sam", image=image)


def test_sam_batch_uses_one_batched_pass_when_the_proposer_has_one():
    class Batched:
        def __init__(self):
            self.batches = []

        def __call__(self, image, grounding, height, width):
            raise AssertionError("the batched path should be taken")

        def propose(self, images, groundings, height, width):
            self.batches.append([g.image_size for g in groundings])
            return np.stack([np.full((height, width), 0.5 if g.no_prior else 0.9)
                             for g in groundings])

    proposer = Batched()
    image = np.zeros((40, 40, 3), np.uint8)
    out = soft_proposals([BOX, NO_PRIOR], 6, 7, "sam", images=[image, image], proposer=proposer,
                         image_size=(40, 40))
    assert out.shape == (2, 6, 7) and out.dtype == np.float32
    assert np.allclose(out[0], 0.9) and np.all(out[1] == 0.5)
    assert proposer.batches == [[(40, 40), (40, 40)]]
