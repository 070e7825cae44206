"""The parts of a :class:`~l2l_env.env.PseudoLabelEnv`, built from an env config.

``gym.make("l2l/PseudoLabel-v0", **config)`` goes through :func:`build_segmenter` and :func:`prepare_parts`: the segmenter
(from ``segmenter`` overrides, or the one handed in), optionally loaded from ``checkpoint`` and
warmed up on the labeled bank for ``warmup_steps``, and the banks of
:func:`~l2l_env.loop_data.load_loop_data`. A run that already holds these parts passes them to
:meth:`PseudoLabelEnv.from_parts` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from l2l_env.bank import SampleBank
from l2l_env.loop_data import LoopData, load_loop_data


def build_segmenter(config: Any):
    """A fresh :class:`segmenter.Segmenter` from an env config's ``segmenter`` overrides (its
    ``device`` and ``seed`` default to the env's)."""
    from segmenter import Segmenter, SegmenterConfig

    overrides = {"device": config.device, "seed": config.seed, **config.segmenter}
    return Segmenter(SegmenterConfig.from_dict(overrides))


def load_weights(segmenter: Any, path: str) -> None:
    """Load the weights (and training state) of the checkpoint at ``path`` into ``segmenter``."""
    from segmenter import Segmenter

    loaded = Segmenter.load(path, text_encoder=segmenter.text_encoder)
    segmenter.load_state_dict(loaded.state_dict())


def warm_up(segmenter: Any, labeled: SampleBank, steps: int, seed: int) -> None:
    """Supervised burn-in: ``steps`` optimiser steps on the labeled bank (batches of up to 32)."""
    from segmenter import fit

    fit(segmenter, labeled.images, labeled.priors, labeled.phrases, labeled.masks.astype(np.float32),
        steps=steps, batch_size=max(1, min(32, len(labeled))), seed=seed, progress=False,
        desc="warm-up", alt_priors=labeled.distractors)


def prepare_parts(config: Any, segmenter: Any) -> LoopData:
    """The banks of an env config for ``segmenter``; then the checkpoint is loaded into it and the
    burn-in run when the config asks for them."""
    data = load_loop_data(config, int(segmenter.config.image_size),
                          distractors=segmenter.config.prior_swap > 0)
    if config.checkpoint:
        load_weights(segmenter, config.checkpoint)
    if config.warmup_steps:
        warm_up(segmenter, data.labeled, config.warmup_steps, config.seed)
    return data
