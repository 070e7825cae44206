"""The weighted BCE + Dice loss: ignored pixels, weight scaling, empty samples, no NaN."""

import numpy as np
import pytest
import torch

from segmenter import loss_terms, segmentation_loss


def _batch(seed: int = 0, b: int = 3, h: int = 8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, h, h, generator=g) * 3
    targets = (torch.rand(b, h, h, generator=g) > 0.5).float()
    weights = torch.rand(b, h, h, generator=g) + 0.1
    return logits, targets, weights


def test_ignored_pixels_do_not_affect_loss_or_gradient():
    logits, targets, weights = _batch()
    weights[:, :3] = 0.0  # ignore the first three rows
    other_logits = logits.clone()
    other_logits[:, :3] = torch.randn(3, 3, 8) * 50
    other_targets = targets.clone()
    other_targets[:, :3] = 1 - other_targets[:, :3]
    a = logits.clone().requires_grad_(True)
    la = segmentation_loss(a, targets, weights)
    la.backward()
    b = other_logits.clone().requires_grad_(True)
    lb = segmentation_loss(b, other_targets, weights)
    lb.backward()
    assert torch.allclose(la, lb, atol=1e-6)
    assert torch.all(a.grad[:, :3] == 0) and torch.all(b.grad[:, :3] == 0)
    assert torch.allclose(a.grad[:, 3:], b.grad[:, 3:], atol=1e-7)
    assert a.grad[:, 3:].abs().sum() > 0


def test_loss_scales_with_the_weights():
    logits, targets, weights = _batch(1)
    base = loss_terms(logits, targets, weights)
    scaled = loss_terms(logits, targets, 2.5 * weights)
    for key in ("loss", "bce", "dice"):
        assert torch.allclose(scaled[key], 2.5 * base[key], rtol=1e-5), key


def test_bce_is_weighted_mean_over_labelled_pixels():
    logits, targets, weights = _batch(2)
    weights[0, 0, :4] = 0.0
    terms = loss_terms(logits, targets, weights, bce_weight=1.0, dice_weight=0.0)
    valid = weights > 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = (bce * weights)[valid].sum() / valid.sum()
    assert torch.allclose(terms["bce"], expected, rtol=1e-5)
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    # a heavier pixel pulls harder: gradient proportional to its weight
    w = torch.ones(1, 1, 2)
    w[0, 0, 1] = 3.0
    x = torch.zeros(1, 1, 2, requires_grad=True)
    segmentation_loss(x, torch.ones(1, 1, 2), w, dice_weight=0.0).backward()
    assert torch.allclose(x.grad[0, 0, 1], 3 * x.grad[0, 0, 0])


def test_sample_with_all_weights_zero_contributes_nothing():
    logits, targets, weights = _batch(3, b=2)
    weights[1] = 0.0
    both = loss_terms(logits, targets, weights)
    alone = loss_terms(logits[:1], targets[:1], weights[:1])
    for key in ("loss", "bce", "dice"):
        assert torch.allclose(both[key], alone[key], atol=1e-6), key


def test_no_labelled_pixel_gives_zero_finite_loss_with_graph():
    logits = torch.randn(2, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.ones(2, 4, 4), torch.zeros(2, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize("value", [1e4, -1e4])
def test_extreme_logits_stay_finite(value):
    logits = torch.full((2, 4, 4), value, requires_grad=True)
    targets = torch.zeros(2, 4, 4)
    targets[:, :2] = 1
    loss = segmentation_loss(logits, targets, torch.ones(2, 4, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_perfect_prediction_has_small_loss_and_shapes_must_match():
    targets = torch.zeros(1, 8, 8)
    targets[0, 2:6, 2:6] = 1
    logits = (targets * 2 - 1) * 20
    assert segmentation_loss(logits, targets, torch.ones_like(targets)).item() < 1e-3
    with pytest.raises(ValueError, match="must match"):
        segmentation_loss(logits, targets[:, :4], torch.ones_like(targets))
    np.testing.assert_allclose(
        segmentation_loss(logits.unsqueeze(1), targets.unsqueeze(1), torch.ones(1, 1, 8, 8)).item(),
        segmentation_loss(logits, targets, torch.ones_like(targets)).item())
