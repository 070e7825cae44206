"""Evaluate a segmenter on an evaluation split, batch by batch, at the original image resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from l2l_env.data import RefSplit
from l2l_env.loop_data import load_table_of
from l2l_env.metrics import MetricAccumulator
from l2l_env.priors import load_priors
from l2l_env.priors.base import box_iou
from segmenter.data import resize_images


def _to_size(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    if probs.shape == (height, width):
        return probs
    t = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass
class EvalSplit:
    """An evaluation split loaded once: its samples (one per sentence), their priors and the
    proposal kind that turns a prior into a map."""

    name: str
    samples: RefSplit
    priors: Any
    proposal: str = "box"

    def __len__(self) -> int:
        return len(self.samples)


def load_eval_split(config: Any, split: str) -> EvalSplit:
    """``split`` of ``config.dataset`` with the priors of ``config.prior_provider``; ``config`` is
    an :class:`l2l_env.config.EnvConfig` (or anything with its data and prior fields)."""

    samples = RefSplit(load_table_of(config, split), "per_sentence")
    priors = load_priors(config.dataset, split, samples, config.prior_provider,
                         cache_dir=config.cache_dir, **config.prior_options)
    return EvalSplit(split, samples, priors, config.proposal)


def evaluate_segmenter(segmenter: Any, data: EvalSplit, *, batch_size: int = 256,
                       teacher: bool = False, max_samples: int | None = None) -> dict[str, float]:
    """mIoU, oIoU, prec@X of ``segmenter`` on a loaded split (:func:`load_eval_split`); also mIoU
    where the prior box is right (IoU >= 0.5 with the referent's box) and where it is wrong, as
    ``mIoU_prior_right/wrong``, and the share of right priors."""

    if not isinstance(data, EvalSplit):
        raise TypeError(f"evaluate_segmenter expects an EvalSplit (load_eval_split(config, split)), "
                        f"got {type(data).__name__}")
    samples, priors = data.samples, data.priors
    size = int(segmenter.config.image_size)
    total = len(samples) if max_samples is None else min(len(samples), max_samples)
    overall, right, wrong = MetricAccumulator(), MetricAccumulator(), MetricAccumulator()
    for start in range(0, total, batch_size):
        batch = [samples[i] for i in range(start, min(total, start + batch_size))]
        ids = [s.sample_id for s in batch]
        images = np.stack([resize_images(s.image[None], size)[0] for s in batch])
        prior_maps = priors.proposals(ids, size, size, kind=data.proposal)
        probs = segmenter.predict(images, prior_maps, [s.phrase for s in batch], teacher=teacher,
                                  batch_size=batch_size)
        preds = [_to_size(p, *s.mask.shape) > 0.5 for p, s in zip(probs, batch)]
        gts = [s.mask for s in batch]
        overall.update(preds, gts)
        is_right = [box_iou(priors.get(i).box, s.box) >= 0.5 for i, s in zip(ids, batch)]
        for flag, acc in ((True, right), (False, wrong)):
            chosen = [k for k, r in enumerate(is_right) if r == flag]
            if chosen:
                acc.update([preds[k] for k in chosen], [gts[k] for k in chosen])
    metrics = overall.compute()
    metrics["mIoU_prior_right"] = float(right.ious().mean()) if right.count else 0.0
    metrics["mIoU_prior_wrong"] = float(wrong.ious().mean()) if wrong.count else 0.0
    metrics["prior_right_fraction"] = right.count / max(overall.count, 1)
    return metrics
