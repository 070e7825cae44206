"""Simulated grounding errors applied to the soft priors of a training batch.

A multimodal LLM misses in a few typical ways: it points at another object (a *distractor*; the
data supplies those boxes, see ``SampleBank.distractors`` and ``fit(alt_priors=...)``), its box is
shifted, shrunk or grown around the right object, or it gives no answer (``prior_dropout``). This
module does the box-free part: :func:`warp_priors` moves and rescales each chosen prior map about
its centre of mass, so the network sees loose and off-centre priors and learns to check them
against the image and the phrase rather than copy them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_priors(priors: torch.Tensor, rate: float, generator: torch.Generator, *,
                scale_range: tuple[float, float] = (0.6, 1.6), max_shift: float = 0.5,
                fill: float = 0.0) -> torch.Tensor:
    """``priors`` (B, 1, H, W) with each map warped with probability ``rate``.

    A warped map is rescaled per axis by a factor drawn log-uniformly from ``scale_range`` about
    its centre of mass and shifted by up to ``max_shift`` of its own extent (its spread along
    that axis) in each direction; pixels from outside the map read ``fill``. All draws come from
    ``generator`` (CPU), a fixed number per sample, so a seeded run is reproducible.
    """
    if rate <= 0:
        return priors
    b, _, h, w = priors.shape
    draws = torch.rand(b, 5, generator=generator)
    chosen = (draws[:, 0] < rate).to(priors.device)
    if not bool(chosen.any()):
        return priors
    lo, hi = torch.log(torch.tensor(scale_range[0])), torch.log(torch.tensor(scale_range[1]))
    scale = torch.exp(lo + (hi - lo) * draws[:, 1:3]).to(priors.device, priors.dtype)  # (B, 2) x, y
    shift = ((draws[:, 3:5] * 2 - 1) * max_shift).to(priors.device, priors.dtype)
    # centre of mass and spread of each map, in normalised [-1, 1] coordinates
    ys = torch.linspace(-1, 1, h, device=priors.device, dtype=priors.dtype)
    xs = torch.linspace(-1, 1, w, device=priors.device, dtype=priors.dtype)
    mass = priors.sum((1, 2, 3)).clamp_min(1e-6)
    cx = (priors.sum((1, 2)) * xs).sum(-1) / mass
    cy = (priors.sum((1, 3)) * ys).sum(-1) / mass
    sx = ((priors.sum((1, 2)) * (xs - cx[:, None]) ** 2).sum(-1) / mass).sqrt() * 2
    sy = ((priors.sum((1, 3)) * (ys - cy[:, None]) ** 2).sum(-1) / mass).sqrt() * 2
    # output pixel p reads input at c + (p - c - shift * spread) / scale
    theta = torch.zeros(b, 2, 3, device=priors.device, dtype=priors.dtype)
    theta[:, 0, 0] = 1 / scale[:, 0]
    theta[:, 1, 1] = 1 / scale[:, 1]
    theta[:, 0, 2] = cx - (cx + shift[:, 0] * sx) / scale[:, 0]
    theta[:, 1, 2] = cy - (cy + shift[:, 1] * sy) / scale[:, 1]
    grid = F.affine_grid(theta, list(priors.shape), align_corners=True)
    warped = F.grid_sample(priors - fill, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True) + fill
    return torch.where(chosen.view(b, 1, 1, 1), warped, priors)
