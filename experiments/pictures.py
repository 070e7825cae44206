"""The two pictures of every semi-supervised run.

* ``OUT/pseudo_label_quality.png``: over the self-evolving loop, the IoU with the ground truth of
  the MLLM prior, the teacher's prediction and the constructed pseudo-label, and the accuracy of
  the labeled pixels (diagnostics measured on the unlabeled samples; never learned from).
* ``OUT/samples.png``: a few unlabeled samples of the end of the loop, each with its phrase:
  image | prior | teacher | constructed label | final prediction | ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from l2l_env.data.visualize import OVERLAY_COLOURS, captioned_panel, grid, overlay

CURVES = (("pl_iou_prior", "prior IoU"), ("pl_iou_teacher", "teacher IoU"),
          ("pl_iou_label", "constructed label IoU"), ("pl_precision", "accuracy of labeled pixels"))
"""The curve keys of ``results.json["pseudo_labels"]["curves"]`` drawn, with their legend."""


def quality_plot(curves: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "") -> Path:
    """Draw the pseudo-label quality curves (percent over loop steps) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    for key, label in CURVES:
        pts = [(c["step"], 100.0 * c[key]) for c in curves if key in c]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=".", label=label, linestyle="--" if key == "pl_precision" else "-")
    ax.set_xlabel("unlabeled samples through the loop")
    ax.set_ylabel("% (against ground truth)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "pseudo-label quality over the self-evolving loop", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def label_overlay(image: np.ndarray, label: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``image`` with labeled foreground tinted cyan, labeled background darkened, ignored pixels
    as they are."""

    shown = overlay(image, weight * (1.0 - label), (20, 20, 20), alpha=0.55)
    return overlay(shown, weight * label, OVERLAY_COLOURS["selection"], alpha=0.7)


def predict_rows(segmenter: Any, bank: Any, constructions: Sequence[dict[str, Any]]
                 ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``(images, priors, phrases, predictions)`` of the bank rows the constructions name."""
    rows = [int(c["row"]) for c in constructions]
    images, priors = bank.images[rows], bank.priors[rows]
    phrases = [bank.phrases[r] for r in rows]
    return images, priors, phrases, segmenter.predict(images, priors, phrases)


def samples_picture(segmenter: Any, bank: Any, constructions: Sequence[dict[str, Any]],
                    truths: Sequence[np.ndarray]) -> np.ndarray:
    """One picture (H, W, 3) uint8: per construction (the env's ``last_construction`` records,
    ``row`` into ``bank``) image | prior | teacher | constructed label | final prediction |
    ground truth, captioned with the phrase."""

    images, priors, phrases, preds = predict_rows(segmenter, bank, constructions)
    size = images.shape[1]
    pictures = []
    for img, prior, pred, built, truth, phrase in zip(images, priors, preds, constructions, truths,
                                                      phrases):
        panels = [img, overlay(img, prior, OVERLAY_COLOURS["prior"]),
                  overlay(img, built["teacher"] > 0.5, OVERLAY_COLOURS["prediction"]),
                  label_overlay(img, built["label"], built["weight"]),
                  overlay(img, pred > 0.5, OVERLAY_COLOURS["prediction"]),
                  overlay(img, truth, OVERLAY_COLOURS["mask"])]
        labeled = float(built["weight"].mean()) * 100
        caption = (f"{phrase}  (image | prior | teacher | label, {labeled:.0f}% labeled | "
                   f"final prediction | truth)")
        pictures.append(captioned_panel(panels, caption, scale=max(1, 128 // size)))
    return np.asarray(grid(pictures, columns=1))
