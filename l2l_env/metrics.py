"""Referring-segmentation metrics, as the RES literature reports them.

* ``mIoU``: mean of per-sample IoU (a sample whose prediction and ground truth are both empty has
  union 0 and scores 0, as LAVT/CRIS evaluation code does).
* ``oIoU``: overall IoU, the sum of intersections over the sum of unions across all samples.
* ``prec@t`` for t in 0.5 .. 0.9: the fraction of samples with IoU >= t.

All values are fractions in [0, 1]. :class:`MetricAccumulator` takes batches, so evaluation never
holds every mask in memory; :func:`segmentation_metrics` is the one-shot form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PREC_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_KEYS: tuple[str, ...] = ("mIoU", "oIoU") + tuple(f"prec@{t}" for t in PREC_THRESHOLDS)


def intersection_union(preds: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample intersection and union pixel counts of two (B, H, W) boolean stacks."""
    preds = np.asarray(preds, dtype=bool)
    gts = np.asarray(gts, dtype=bool)
    if preds.shape != gts.shape:
        raise ValueError(f"prediction shape {preds.shape} does not match ground-truth shape {gts.shape}")
    if preds.ndim == 2:
        preds, gts = preds[None], gts[None]
    flat_p = preds.reshape(preds.shape[0], -1)
    flat_g = gts.reshape(gts.shape[0], -1)
    inter = np.count_nonzero(flat_p & flat_g, axis=1).astype(np.int64)
    union = np.count_nonzero(flat_p | flat_g, axis=1).astype(np.int64)
    return inter, union


def iou(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Per-sample IoU of (B, H, W) (or one (H, W)) boolean masks; empty union scores 0."""
    inter, union = intersection_union(preds, gts)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


class MetricAccumulator:
    """Accumulates intersections and unions batch by batch; :meth:`compute` gives the metrics."""

    def __init__(self) -> None:
        self._inter: list[np.ndarray] = []
        self._union: list[np.ndarray] = []

    def update(self, preds: np.ndarray | Sequence[np.ndarray], gts: np.ndarray | Sequence[np.ndarray]) -> None:
        """Add a batch: (B, H, W) arrays, or sequences of (H, W) masks of varying sizes."""
        if isinstance(preds, np.ndarray) and isinstance(gts, np.ndarray):
            inter, union = intersection_union(preds, gts)
        else:
            if len(preds) != len(gts):
                raise ValueError(f"got {len(preds)} predictions but {len(gts)} ground truths")
            pairs = [intersection_union(p, g) for p, g in zip(preds, gts)]
            inter = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
            union = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        self._inter.append(inter)
        self._union.append(union)

    @property
    def count(self) -> int:
        return int(sum(len(i) for i in self._inter))

    def ious(self) -> np.ndarray:
        """Per-sample IoU of everything seen so far."""
        if not self._inter:
            return np.zeros(0)
        inter, union = np.concatenate(self._inter), np.concatenate(self._union)
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    def compute(self) -> dict[str, float]:
        """``mIoU``, ``oIoU`` and ``prec@0.5`` .. ``prec@0.9`` over everything seen so far."""
        if not self._inter:
            raise ValueError("no samples were added to the metric accumulator")
        inter, union = np.concatenate(self._inter), np.concatenate(self._union)
        ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        out = {"mIoU": float(ious.mean()),
               "oIoU": float(inter.sum() / union.sum()) if union.sum() > 0 else 0.0}
        for t in PREC_THRESHOLDS:
            out[f"prec@{t}"] = float(np.mean(ious >= t - 1e-12))
        return out


def segmentation_metrics(preds: np.ndarray | Iterable[np.ndarray],
                         gts: np.ndarray | Iterable[np.ndarray]) -> dict[str, float]:
    """Metrics over a sequence of binary masks (see the module docstring for definitions)."""
    acc = MetricAccumulator()
    if isinstance(preds, np.ndarray) and isinstance(gts, np.ndarray):
        acc.update(preds, gts)
    else:
        acc.update(list(preds), list(gts))
    return acc.compute()
