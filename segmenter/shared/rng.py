"""Named random streams: each stream of a run draws from its own generator, seeded by the
stream's name and the keys that make a draw reproducible (a step, a seed), so that no two
streams share numbers and none depends on the order in which the others drew."""

from __future__ import annotations

import numpy as np

STREAMS = {"fit_prior_swap": 1, "update_prior_swap": 3, "pseudo_prior_dropout": 5}
"""The salt of each named stream (fixed: changing one changes the results of every run)."""


def stream(name: str, *keys: int) -> np.random.Generator:
    """The generator of stream ``name`` at ``keys`` (e.g. ``stream("update_prior_swap", step)``)."""
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; known: {sorted(STREAMS)}")
    return np.random.default_rng([*(int(k) for k in keys), STREAMS[name]])


def swap_priors(priors: np.ndarray, alternatives: np.ndarray, chance: float,
                rng: np.random.Generator) -> np.ndarray:
    """``priors`` (N, H, W) with each row replaced by its row of ``alternatives`` with probability
    ``chance`` (one draw of ``rng`` per row)."""
    draw = rng.random(len(priors)) < chance
    return np.where(draw[:, None, None], alternatives, priors)
