"""Weighted BCE + soft Dice with an ignore mask, so partial, weighted pseudo-labels are first-class.

A pixel's weight ``w >= 0`` scales its contribution; ``w == 0`` ignores it (it affects neither the
loss nor the gradient). Normalisation is by the *number* of non-ignored pixels (not the sum of
weights), so scaling every weight by ``c`` scales the loss by ``c``:

* BCE: ``sum(w * bce) / count(w > 0)`` over the batch;
* Dice: per sample ``1 - (2 sum(w p t) + s) / (sum(w p) + sum(w t) + s)``, multiplied by the
  sample's mean weight over its non-ignored pixels and averaged over samples that have any.

A sample whose weights are all zero contributes nothing; a batch with no labelled pixel gives a
zero loss that is still connected to the graph. Never NaN for finite logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                      bce_weight: float = 1.0, dice_weight: float = 1.0) -> torch.Tensor:
    """The scalar ``bce_weight * BCE + dice_weight * Dice`` (see the module docstring)."""
    return loss_terms(logits, targets, weights, bce_weight, dice_weight)["loss"]


def loss_terms(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
               bce_weight: float = 1.0, dice_weight: float = 1.0,
               smooth: float = 1.0) -> dict[str, torch.Tensor]:
    """``{"loss", "bce", "dice"}`` for ``logits``, ``targets`` in [0, 1] and ``weights`` >= 0.

    All three inputs have the same shape, (B, H, W) or (B, 1, H, W). ``smooth`` is the Dice
    smoothing term, in units of the sample's mean weight (so the loss scales exactly with weights).
    """
    if logits.shape != targets.shape or logits.shape != weights.shape:
        raise ValueError(f"segmentation_loss: logits {tuple(logits.shape)}, targets "
                         f"{tuple(targets.shape)} and weights {tuple(weights.shape)} must match")
    logits = logits.float().flatten(1)
    targets = targets.float().flatten(1)
    weights = weights.float().flatten(1)
    valid = weights > 0
    w = torch.where(valid, weights, torch.zeros_like(weights))
    count = valid.sum().clamp_min(1)
    bce_px = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    bce = (torch.where(valid, bce_px, torch.zeros_like(bce_px)) * w).sum() / count
    probs = torch.sigmoid(logits)
    inter = (w * probs * targets).sum(1)
    denom = (w * probs).sum(1) + (w * targets).sum(1)
    n_valid = valid.sum(1)
    has = n_valid > 0
    mean_w = w.sum(1) / n_valid.clamp_min(1)
    s = smooth * mean_w + 1e-12
    dice_i = 1.0 - (2.0 * inter + s) / (denom + s)
    dice_sum = torch.where(has, dice_i * mean_w, torch.zeros_like(dice_i)).sum()
    dice = dice_sum / has.sum().clamp_min(1)
    loss = bce_weight * bce + dice_weight * dice
    return {"loss": loss, "bce": bce, "dice": dice}
