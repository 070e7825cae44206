"""Soft segmentation proposals: a grounding becomes an HxW probability map.

Kinds (registry :data:`PROPOSALS`, by name):

* ``box``: a soft-edged box, the product of four sigmoids across its edges (``edge``, default
  0.05, sets their width as a fraction of the box side); about 1 inside, 0 outside, 0.5 near the
  edge.
* ``gaussian``: a Gaussian at the box centre (or at each of the grounding's points, their max)
  whose 0.5 contour is, by default, the ellipse inscribed in the box.
* ``sam`` / ``sam2``: a SAM / SAM 2 mask prompted by the box (``l2l_env.priors.sam``, imported
  on first use; needs ``image=`` and ``proposer=`` or ``model_path=``).
* ``mask``: the grounding's own mask (from a provider that segments the phrase, e.g. ``sam3``),
  resized with antialiasing (soft only along its edges); a grounding without a mask renders its
  ``box`` proposal.

A grounding without a box (``no_prior``) gives the flat map :data:`NO_PRIOR_VALUE` (0.5: no
information), never a confident zero; callers carry the ``no_prior`` flag next to the map.
Boxes are in original image pixels; they are scaled to the map by ``image_size`` (the
grounding's own, else the ``image_size`` argument, else the map's size). With
``confidence=True`` a map is blended toward 0.5 by ``1 - score``.

:func:`soft_proposals` / :func:`proposal_maps` render many groundings at one size at once
(box and gaussian are separable: two 1-D profiles per grounding and an outer product).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from l2l_env.priors.base import Grounding, decode_mask
from segmenter.config import NO_PRIOR_VALUE

GAUSS_INSCRIBED = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
"""Gaussian sigma, as a fraction of the box side, whose 0.5 contour is the inscribed ellipse."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def grounding_arrays(groundings: Sequence[Grounding],
                     image_size: tuple[int, int] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (B,4) xywh with NaN rows for no prior, image sizes (B,2) h,w with NaN if unknown,
    scores (B,))`` of ``groundings``."""
    n = len(groundings)
    boxes = np.full((n, 4), np.nan, dtype=np.float64)
    sizes = np.full((n, 2), np.nan, dtype=np.float64)
    scores = np.zeros(n, dtype=np.float64)
    for i, g in enumerate(groundings):
        if g.box is not None:
            boxes[i] = g.box
        size = g.image_size or image_size
        if size is not None:
            sizes[i] = size
        scores[i] = g.score
    return boxes, sizes, scores


def _scales(sizes: np.ndarray | None, n: int, height: int, width: int) -> np.ndarray:
    """(B, 2) map pixels per image pixel ``(sx, sy)``; unknown image sizes scale by 1."""
    if sizes is None:
        return np.ones((n, 2))
    s = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    known = np.isfinite(s) & (s > 0)
    safe = np.where(known, s, 1.0)
    return np.stack([np.where(known[:, 1], width / safe[:, 1], 1.0),
                     np.where(known[:, 0], height / safe[:, 0], 1.0)], 1)


def _scaled_xyxy(boxes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Boxes (B,4) xywh in image pixels -> (B,4) x0,y0,x1,y1 in map pixels."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = scales[:, 0], scales[:, 1]
    return np.stack([b[:, 0] * sx, b[:, 1] * sy,
                     (b[:, 0] + b[:, 2]) * sx, (b[:, 1] + b[:, 3]) * sy], 1)


def _box_profiles(lo: np.ndarray, hi: np.ndarray, n: int, edge: float,
                  min_edge: float) -> np.ndarray:
    """(B, n) soft indicator of [lo, hi] sampled at pixel centres."""
    c = np.arange(n, dtype=np.float64)[None, :] + 0.5
    s = np.maximum(edge * (hi - lo), min_edge)[:, None]
    return _sigmoid((c - lo[:, None]) / s) * _sigmoid((hi[:, None] - c) / s)


def _box_maps(xyxy: np.ndarray, height: int, width: int, *, edge: float = 0.05,
              min_edge: float = 0.25) -> np.ndarray:
    fx = _box_profiles(xyxy[:, 0], xyxy[:, 2], width, edge, min_edge)
    fy = _box_profiles(xyxy[:, 1], xyxy[:, 3], height, edge, min_edge)
    return fy[:, :, None] * fx[:, None, :]


def _gauss_profiles(centre: np.ndarray, sigma: np.ndarray, n: int) -> np.ndarray:
    c = np.arange(n, dtype=np.float64)[None, :] + 0.5
    return np.exp(-0.5 * ((c - centre[:, None]) / sigma[:, None]) ** 2)


def _gaussian_maps(xyxy: np.ndarray, height: int, width: int, *, sigma: float = GAUSS_INSCRIBED,
                   min_sigma: float = 0.5,
                   points: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Gaussians at box centres; rows with points (already in map pixels) take the max over them."""
    sx = np.maximum(sigma * (xyxy[:, 2] - xyxy[:, 0]), min_sigma)
    sy = np.maximum(sigma * (xyxy[:, 3] - xyxy[:, 1]), min_sigma)
    cx = 0.5 * (xyxy[:, 0] + xyxy[:, 2])
    cy = 0.5 * (xyxy[:, 1] + xyxy[:, 3])
    out = _gauss_profiles(cy, sy, height)[:, :, None] * _gauss_profiles(cx, sx, width)[:, None, :]
    if points is not None:
        for i, pts in enumerate(points):
            if pts is None or len(pts) == 0:
                continue
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
            k = len(pts)
            maps = (_gauss_profiles(pts[:, 1], np.full(k, sy[i]), height)[:, :, None]
                    * _gauss_profiles(pts[:, 0], np.full(k, sx[i]), width)[:, None, :])
            out[i] = maps.max(axis=0)
    return out


VECTORISED: dict[str, Callable[..., np.ndarray]] = {"box": _box_maps, "gaussian": _gaussian_maps}
"""Kinds rendered for a whole batch at once from (B, 4) map-pixel ``xyxy`` boxes."""


def proposal_maps(boxes: np.ndarray, height: int, width: int, kind: str = "box", *,
                  image_sizes: np.ndarray | None = None, scores: np.ndarray | None = None,
                  points: Sequence[Sequence[tuple[float, float]]] | None = None,
                  confidence: bool = False, **params: Any) -> np.ndarray:
    """(B, H, W) float32 maps of a vectorised ``kind`` from array inputs.

    :param boxes: (B, 4) ``xywh`` in image pixels; NaN rows have no prior (flat 0.5).
    :param image_sizes: (B, 2) ``(h, w)`` of each box's image (NaN/None: the map's size).
    :param scores: (B,) confidences, used with ``confidence=True``.
    :param points: per row, ``(x, y)`` image-pixel points (``gaussian`` only).
    """
    if kind not in VECTORISED:
        raise ValueError(f"proposal kind {kind!r} has no batch renderer; expected one of "
                         f"{sorted(VECTORISED)} (use soft_proposals for {sorted(PROPOSALS)})")
    if height <= 0 or width <= 0:
        raise ValueError(f"proposal size must be positive, got height={height}, width={width}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    missing = ~np.isfinite(boxes).all(axis=1)
    scales = _scales(image_sizes, len(boxes), height, width)
    xyxy = _scaled_xyxy(np.where(missing[:, None], 0.0, boxes), scales)
    if kind == "gaussian" and points is not None:
        params["points"] = [None if p is None or len(p) == 0
                            else np.asarray(p, float).reshape(-1, 2) * scales[i]
                            for i, p in enumerate(points)]
    maps = VECTORISED[kind](xyxy, height, width, **params)
    if confidence:
        if scores is None:
            raise ValueError("confidence=True needs scores")
        maps = with_confidence(maps, np.asarray(scores, dtype=np.float64)[:, None, None])
    maps[missing] = NO_PRIOR_VALUE
    return np.clip(maps, 0.0, 1.0).astype(np.float32)


def _vectorised_single(kind: str) -> Callable[..., np.ndarray]:
    def render(grounding: Grounding, height: int, width: int, *,
               image_size: tuple[int, int] | None = None, **params: Any) -> np.ndarray:
        return soft_proposals([grounding], height, width, kind, image_size=image_size, **params)[0]
    render.__name__ = f"{kind}_proposal"
    render.__doc__ = f"The ``{kind}`` proposal of one grounding, (H, W) float32."
    return render


def _with_size(grounding: Grounding, image_size: tuple[int, int] | None) -> Grounding:
    if grounding.image_size is None and image_size is not None:
        return dataclasses.replace(grounding, image_size=tuple(image_size))
    return grounding


def with_confidence(maps: np.ndarray, scores: np.ndarray | float) -> np.ndarray:
    """Maps blended toward the uninformative 0.5 by ``1 - score`` (scores clipped to [0, 1])."""
    return NO_PRIOR_VALUE + (maps - NO_PRIOR_VALUE) * np.clip(scores, 0.0, 1.0)


def sam_proposal(grounding: Grounding, height: int, width: int, *, image: np.ndarray,
                 proposer: Callable[..., np.ndarray] | None = None, model_path: str | None = None,
                 device: str = "cpu", confidence: bool = False,
                 image_size: tuple[int, int] | None = None, kind: str = "sam") -> np.ndarray:
    """A SAM (``kind="sam"``) or SAM 2 (``"sam2"``) mask prompted by the grounding's box
    (``l2l_env.priors.sam.PROPOSERS``).

    Pass a ready ``proposer`` to avoid loading the model per call, or ``model_path``.
    """
    if grounding.no_prior:
        return np.full((height, width), NO_PRIOR_VALUE, dtype=np.float32)
    grounding = _with_size(grounding, image_size)
    if proposer is None:
        from l2l_env.priors.sam import PROPOSERS

        if model_path is None:
            raise ValueError(f"proposal kind {kind!r} needs proposer= (a "
                             f"{PROPOSERS[kind].__name__}) or model_path=")
        proposer = PROPOSERS[kind](model_path, device=device)
    out = np.clip(np.asarray(proposer(image, grounding, height, width), dtype=np.float32), 0.0, 1.0)
    if out.shape != (height, width):
        raise ValueError(f"{kind} proposer returned shape {out.shape}, expected {(height, width)}")
    if confidence:
        out = with_confidence(out, float(grounding.score))
    return out.astype(np.float32)


def mask_proposal(grounding: Grounding, height: int, width: int, *, confidence: bool = False,
                  image_size: tuple[int, int] | None = None, **box_params: Any) -> np.ndarray:
    """The grounding's own mask at ``(height, width)`` (bilinear, antialiased when shrinking);
    without a mask its ``box`` proposal (``box_params`` go to it), without a prior flat 0.5."""
    if grounding.mask is None or grounding.image_size is None:
        return soft_proposals([grounding], height, width, "box", image_size=image_size,
                              confidence=confidence, **box_params)[0]
    mask = decode_mask(grounding.mask, grounding.image_size).astype(np.float32)
    out = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.BILINEAR))
    if confidence:
        out = with_confidence(out, float(grounding.score))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


SAM_KINDS = ("sam", "sam2")
"""Proposal kinds that prompt a segmenter with the grounding's box (one batched pass each)."""
PROPOSALS: dict[str, Callable[..., np.ndarray]] = {
    "box": _vectorised_single("box"),
    "gaussian": _vectorised_single("gaussian"),
    "sam": sam_proposal,
    "sam2": functools.partial(sam_proposal, kind="sam2"),
    "mask": mask_proposal,
}
"""Proposal kinds by name: ``fn(grounding, height, width, **params) -> (H, W) float32``."""


def to_soft_proposal(grounding: Grounding, height: int, width: int, kind: str = "box",
                     **params: Any) -> np.ndarray:
    """The (H, W) float32 proposal in [0, 1] of one grounding (see the module docstring)."""
    if kind not in PROPOSALS:
        raise ValueError(f"unknown proposal kind {kind!r}; expected one of {sorted(PROPOSALS)}")
    return PROPOSALS[kind](grounding, height, width, **params)


def soft_proposals(groundings: Sequence[Grounding], height: int, width: int, kind: str = "box", *,
                   image_size: tuple[int, int] | None = None,
                   images: Sequence[np.ndarray] | None = None, **params: Any) -> np.ndarray:
    """(B, H, W) float32 proposals of many groundings at one size.

    ``box`` and ``gaussian`` are rendered in one vectorised pass; other kinds call their
    registry function per grounding (with ``image=images[i]`` when ``images`` is given).
    ``image_size`` is the original size for groundings that do not carry their own.
    """
    if kind not in PROPOSALS:
        raise ValueError(f"unknown proposal kind {kind!r}; expected one of {sorted(PROPOSALS)}")
    if kind in VECTORISED:
        boxes, sizes, scores = grounding_arrays(groundings, image_size)
        points = None
        if kind == "gaussian" and any(g.points for g in groundings):
            points = [g.points for g in groundings]
        return proposal_maps(boxes, height, width, kind, image_sizes=sizes, scores=scores,
                             points=points, **params)
    proposer = params.get("proposer")
    if kind in SAM_KINDS and images is not None and hasattr(proposer, "propose") \
            and not params.get("confidence"):
        gs = [_with_size(g, image_size) for g in groundings]
        maps = np.asarray(proposer.propose(list(images), gs, height, width), np.float32)
        return np.clip(maps, 0.0, 1.0)  # one batched pass (SamProposer.propose)
    out = np.empty((len(groundings), height, width), dtype=np.float32)
    for i, g in enumerate(groundings):
        extra = {"image": images[i]} if images is not None else {}
        out[i] = PROPOSALS[kind](g, height, width, image_size=image_size, **extra, **params)
    return out
