"""What a prior is (:class:`Grounding`) and what gives one (:class:`PriorProvider`).

A provider grounds a referring phrase in its image: a box in original image pixels, optional
points, optionally the referent's mask (a provider that segments the phrase), and its confidence
score. A provider that cannot ground a phrase returns a grounding with
``box=None`` (``no_prior``); it never fakes a box with zero confidence.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from l2l_env.data.types import Box, ReferringSample


@dataclass(frozen=True)
class Grounding:
    """A provider's answer for one image-phrase pair.

    :param box: ``(x, y, w, h)`` in original image pixels; ``None`` when there is no prior.
    :param points: optional ``(x, y)`` points on the referent, original image pixels.
    :param score: the provider's confidence in ``[0, 1]`` (caches written before scores were
        recorded read as 1).
    :param parsed: ``False`` when a model's answer could not be parsed.
    :param raw: the raw model answer (diagnostics; the simulator names its error kind here).
    :param image_size: ``(height, width)`` of the image the box refers to, when known; proposals
        scale the box from this size to theirs.
    :param mask: the referent's mask as COCO compressed RLE ``counts`` (:func:`encode_mask`) in
        pixels of ``image_size`` (required with a mask), from providers that segment the phrase;
        ``box`` is then the mask's bounding box.
    """

    box: Box | None
    points: tuple[tuple[float, float], ...] = ()
    score: float = 1.0
    parsed: bool = True
    raw: str = ""
    image_size: tuple[int, int] | None = None
    mask: str | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.image_size is None:
            raise ValueError("a grounding with a mask needs image_size (the mask's height, width)")

    @property
    def no_prior(self) -> bool:
        return self.box is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the cache line's payload); defaults are left out."""
        d: dict[str, Any] = {"box": None if self.box is None else [float(v) for v in self.box],
                             "score": float(self.score)}
        if self.points:
            d["points"] = [[float(x), float(y)] for x, y in self.points]
        if not self.parsed:
            d["parsed"] = False
        if self.raw:
            d["raw"] = self.raw
        if self.image_size is not None:
            d["image_size"] = [int(v) for v in self.image_size]
        if self.mask is not None:
            d["mask"] = self.mask
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grounding:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the bad field."""
        if not isinstance(d, dict) or "box" not in d:
            raise ValueError(f"a grounding must be an object with a 'box' field, got {d!r}")
        box = d["box"]
        if box is not None:
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise ValueError(f"grounding 'box' must be null or [x, y, w, h], got {box!r}")
            box = tuple(float(v) for v in box)
            if not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
                raise ValueError(f"grounding 'box' must be finite [x, y, w, h] with w, h >= 0, "
                                 f"got {list(box)}")
        points = tuple((float(p[0]), float(p[1])) for p in d.get("points", ()))
        if not all(math.isfinite(v) for pt in points for v in pt):
            raise ValueError(f"grounding 'points' must be finite, got {d.get('points')!r}")
        score = float(d.get("score", 1.0))
        if not math.isfinite(score):
            raise ValueError(f"grounding 'score' must be finite, got {score}")
        size = d.get("image_size")
        mask = d.get("mask")
        if mask is not None and (not isinstance(mask, str) or size is None):
            raise ValueError("grounding 'mask' must be an RLE counts string next to "
                             f"'image_size', got {type(mask).__name__} with image_size {size!r}")
        return cls(box=box, points=points, score=score,
                   parsed=bool(d.get("parsed", True)), raw=str(d.get("raw", "")),
                   image_size=None if size is None else (int(size[0]), int(size[1])),
                   mask=mask)


NO_PRIOR = Grounding(box=None, score=0.0)
"""The grounding of a provider that has nothing to say."""


class PriorProvider(abc.ABC):
    """Grounds referring phrases; subclasses implement :meth:`ground_batch`.

    ``split`` lets a provider behave per split (the simulator's accuracy differs per split);
    real models ignore it. Providers must not read ``sample.mask``.
    """

    name: str = "provider"

    @abc.abstractmethod
    def ground_batch(self, samples: Sequence[ReferringSample],
                     split: str | None = None) -> list[Grounding]:
        """One grounding per sample, in order."""

    def ground(self, sample: ReferringSample, split: str | None = None) -> Grounding:
        return self.ground_batch([sample], split)[0]

    def config(self) -> dict[str, Any]:
        """What determines this provider's answers (hashed into cache keys)."""
        return {"name": self.name}


def encode_mask(mask: np.ndarray) -> str:
    """An ``HxW`` boolean mask -> its COCO compressed RLE ``counts`` string."""
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return rle["counts"].decode("ascii")


def decode_mask(counts: str, size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_mask`: the ``size`` = ``(H, W)`` boolean mask."""
    rle = {"size": [int(size[0]), int(size[1])], "counts": counts.encode("ascii")}
    return coco_mask.decode(rle).astype(bool)


def mask_box(mask: np.ndarray) -> Box | None:
    """The tight ``(x, y, w, h)`` pixel box of a boolean mask; ``None`` when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, y0 = float(xs.min()), float(ys.min())
    return (x0, y0, float(xs.max()) + 1.0 - x0, float(ys.max()) + 1.0 - y0)


def box_iou(a: Box | None, b: Box | None) -> float:
    """IoU of two ``(x, y, w, h)`` boxes; 0 when either is ``None`` or the union is empty."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def box_iou_array(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) ``xywh`` arrays; NaN rows (no prior) score 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.nan_to_num(out, nan=0.0)
