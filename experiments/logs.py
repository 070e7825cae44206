"""TensorBoard logging of a run (rank 0 only) and the sample pictures it shows: image, prior,
prediction and pseudo-label selection overlaid side by side."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.outputs import TENSORBOARD
from experiments.pictures import label_overlay, predict_rows
from l2l_env.data.visualize import OVERLAY_COLOURS, captioned_panel, grid, overlay


class RunLogger:
    """A ``SummaryWriter`` under ``OUT/tb`` that does nothing when ``enabled`` is false.

    ``purge_step``: on resume, events at or after this step from the interrupted run are dropped,
    so curves are not drawn twice.
    """

    def __init__(self, log_dir: str | os.PathLike, enabled: bool = True,
                 purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def selection_panels(segmenter: Any, bank: Any, constructions: Sequence[dict[str, Any]]) -> np.ndarray:
    """One picture (H, W, 3) uint8: per construction (the env's ``last_construction`` records,
    ``row`` into ``bank``) a row of image | prior | prediction | constructed label (labeled
    foreground cyan, labeled background dark), captioned with the phrase."""

    images, priors, phrases, preds = predict_rows(segmenter, bank, constructions)
    size = images.shape[1]
    pictures = []
    for img, prior, pred, built, phrase in zip(images, priors, preds, constructions, phrases):
        panels = [img, overlay(img, prior, OVERLAY_COLOURS["prior"]),
                  overlay(img, pred, OVERLAY_COLOURS["prediction"]),
                  label_overlay(img, built["label"], built["weight"])]
        caption = (f"{phrase}  (prior | prediction | label, {built['weight'].mean() * 100:.0f}% "
                   "labeled)")
        pictures.append(captioned_panel(panels, caption, scale=max(1, 192 // size)))
    return np.asarray(grid(pictures, columns=1))


def eval_panels(segmenter: Any, images: np.ndarray, priors: np.ndarray, phrases: Sequence[str],
                masks: np.ndarray) -> np.ndarray:
    """One picture: per evaluation sample image | ground truth | prior | prediction."""

    preds = segmenter.predict(images, priors, list(phrases))
    size = images.shape[1]
    pictures = []
    for img, prior, pred, mask, phrase in zip(images, priors, preds, masks, phrases):
        panels = [overlay(img, mask, OVERLAY_COLOURS["mask"]),
                  overlay(img, prior, OVERLAY_COLOURS["prior"]),
                  overlay(img, pred, OVERLAY_COLOURS["prediction"])]
        pictures.append(captioned_panel(panels, f"{phrase}  (truth | prior | prediction)",
                                        scale=max(1, 192 // size)))
    return np.asarray(grid(pictures, columns=1))


def tb_dir(out: str | os.PathLike) -> Path:
    return Path(out) / TENSORBOARD
