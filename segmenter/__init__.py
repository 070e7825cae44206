"""The guided hierarchical segmentation network: MLLM priors and the phrase become learnable
guidance signals that condition every stage of a multi-scale segmenter.

``Segmenter`` owns the network, the text encoder (with its per-phrase feature cache), the
optimiser, the poly schedule and the EMA teacher; ``segmentation_loss`` is the weighted BCE + Dice
with an ignore mask; ``fit`` is a supervised training loop on arrays.
"""

from segmenter.config import SegmenterConfig
from segmenter.data import resize_batch, resize_images, resize_maps, resize_masks, stack_samples
from segmenter.engine import Segmenter
from segmenter.loss import loss_terms, segmentation_loss
from segmenter.text import TextEncoder
from segmenter.train import FitResult, fit

__all__ = [
    "FitResult", "Segmenter", "SegmenterConfig", "TextEncoder", "fit", "loss_terms",
    "resize_batch", "resize_images", "resize_maps", "resize_masks", "segmentation_loss",
    "stack_samples",
]
