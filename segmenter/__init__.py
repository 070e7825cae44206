"""The guided hierarchical segmentation network: MLLM priors and the phrase become learnable
guidance signals that condition every stage of a multi-scale segmenter.

``Segmenter`` owns the network, the text encoder (with its per-phrase feature cache), the
optimiser, the poly schedule and the EMA teacher; ``segmentation_loss`` is the weighted BCE + Dice
with an ignore mask; ``fit`` is a supervised training loop on arrays.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SegmenterConfig": "segmenter.config", "Segmenter": "segmenter.engine",
    "TextEncoder": "segmenter.text", "FitResult": "segmenter.train", "fit": "segmenter.train",
    "loss_terms": "segmenter.loss", "segmentation_loss": "segmenter.loss",
    **{name: "segmenter.data" for name in ("resize_batch", "resize_images", "resize_maps",
                                           "resize_masks", "stack_samples")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names on first use: the torch-free helpers of :mod:`segmenter.shared`
    (used by the data and prior tools) do not import torch."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'segmenter' has no attribute {name!r}")
