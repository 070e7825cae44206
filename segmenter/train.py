"""A supervised training loop on arrays (used by the benchmark and for the experiments' warm-up).

Mini-batches are drawn from a seeded permutation per epoch, positioned by the segmenter's step,
so a run resumed from a checkpoint continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segmenter.shared.loader import BatchLoader
from segmenter.engine import Segmenter
from segmenter.shared.rng import stream, swap_priors


@dataclass
class FitResult:
    """What :func:`fit` did: steps taken in this call, seconds, and the logged history."""

    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "steps"


def batch_indices(n: int, batch_size: int, step: int, seed: int = 0) -> np.ndarray:
    """The sample indices of batch ``step``: consecutive slices of per-epoch permutations
    seeded by ``(seed, epoch)`` (a batch may straddle two epochs)."""
    if n < 1:
        raise ValueError("cannot draw batches from an empty training set")
    start = step * batch_size
    epoch, offset = divmod(start, n)
    out: list[np.ndarray] = []
    need = batch_size
    while need > 0:
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset:offset + need]
        out.append(take)
        need -= take.size
        epoch, offset = epoch + 1, 0
    return np.concatenate(out)


class _FitBatch:
    """Batch ``step`` of :func:`fit` from its arrays: ``{"step", "images", "priors", "phrases",
    "targets", "weights", "objects"}`` (a function of the step alone)."""

    def __init__(self, images: Any, priors: Any, phrases: list[str], targets: Any, weights: Any,
                 alt_priors: Any, n: int, batch_size: int, seed: int, prior_swap: float,
                 objects: Any = None) -> None:
        self.images, self.priors, self.phrases, self.objects = images, priors, phrases, objects
        self.targets, self.weights, self.alt_priors = targets, weights, alt_priors
        self.n, self.batch_size, self.seed, self.prior_swap = n, batch_size, seed, prior_swap

    def __call__(self, step: int) -> dict[str, Any]:
        idx = batch_indices(self.n, self.batch_size, step, self.seed)
        batch_priors = None if self.priors is None else self.priors[idx]
        if self.prior_swap > 0:
            batch_priors = swap_priors(batch_priors, self.alt_priors[idx], self.prior_swap,
                                       stream("fit_prior_swap", self.seed, step))
        return {"step": step, "images": self.images[idx], "priors": batch_priors,
                "phrases": [self.phrases[i] for i in idx], "targets": self.targets[idx],
                "weights": None if self.weights is None else self.weights[idx],
                "objects": None if self.objects is None else self.objects[idx]}


def fit(segmenter: Segmenter, images: np.ndarray, priors: np.ndarray | None,
        phrases: Sequence[str], targets: np.ndarray, weights: np.ndarray | None = None, *,
        steps: int | None = None, minutes: float | None = None, batch_size: int = 32,
        seed: int = 0, eval_fn: Callable[[Segmenter], dict[str, float]] | None = None,
        eval_every: int = 0, log_every: int = 50, progress: bool = True,
        desc: str = "train", alt_priors: np.ndarray | None = None,
        prior_swap: float | None = None, num_workers: int = 0,
        objects: np.ndarray | None = None) -> FitResult:
    """Train ``segmenter`` on arrays for ``steps`` optimiser steps and/or ``minutes`` of wall time
    (whichever ends first; at least one must be given).

    ``images`` (N, H, W, 3) uint8, ``priors`` (N, H, W) or ``None``, ``phrases`` N strings,
    ``targets`` (N, H, W), ``weights`` (N, H, W) or ``None`` (all ones). ``eval_fn(segmenter)`` is
    called every ``eval_every`` steps and at the end; its dict is added to the history.

    ``alt_priors`` (N, H, W) are *wrong* priors (e.g. a soft box on another object of the image)
    that replace a sample's prior with probability ``prior_swap``: simulated grounding errors, so
    the network sees enough of them to learn when not to trust a prior.

    ``objects`` (N, heads, H, W) int are the targets of the segmenter's object-attribute heads
    (see :meth:`Segmenter.train_step`); ``None`` leaves those heads untrained.

    The arrays may be any row sources (``source[idx]`` gives the rows of a batch, e.g. the
    streamed fields of ``l2l_env.bank.SampleBank``). Batch ``step`` is a function of the step
    alone (:func:`batch_indices`, and the prior swap seeded by ``(seed, step)``), so with
    ``num_workers`` > 0 batches are assembled ahead in worker processes
    (:class:`segmenter.shared.loader.BatchLoader`, pinned on CUDA) and training is the same.
    """
    if prior_swap is None:  # the segmenter's own setting, where distractors are given
        prior_swap = segmenter.config.prior_swap if alt_priors is not None else 0.0
    if prior_swap > 0 and (alt_priors is None or priors is None):
        raise ValueError("prior_swap > 0 needs priors and alt_priors")
    if not 0.0 <= prior_swap <= 1.0:
        raise ValueError(f"prior_swap must be in [0, 1], got {prior_swap}")
    if steps is None and minutes is None:
        raise ValueError("fit needs steps= or minutes= (or both)")
    n = len(phrases)
    for name, arr in (("images", images), ("priors", priors), ("targets", targets),
                      ("weights", weights), ("alt_priors", alt_priors), ("objects", objects)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"fit: {name} has {len(arr)} entries but there are {n} phrases")
    phrases = list(phrases)
    deadline = None if minutes is None else time.perf_counter() + 60.0 * minutes
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    running: dict[str, float] = {}
    taken = 0
    stopped_by = "steps"
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    make = _FitBatch(images, priors, phrases, targets, weights, alt_priors, n, batch_size, seed,
                     prior_swap, objects)
    loader = BatchLoader(make, num_workers=num_workers,
                         pin_memory=segmenter.device.type == "cuda" and num_workers > 0)
    first = segmenter.step
    keys = itertools.count(first) if steps is None else range(first, first + steps)
    batches = loader.batches(keys)
    try:
        while steps is None or taken < steps:
            if deadline is not None and time.perf_counter() >= deadline:
                stopped_by = "time"
                break
            batch = next(batches)
            if batch["step"] != segmenter.step:  # train_step takes exactly one step or raises
                raise RuntimeError(f"fit: batch of step {batch['step']} at step {segmenter.step}")
            extra = {} if batch["objects"] is None else {"objects": batch["objects"]}
            out = segmenter.train_step(batch["images"], batch["priors"], batch["phrases"],
                                       batch["targets"], batch["weights"], **extra)
            taken += 1
            for k, v in out.items():
                running[k] = v if k not in running else 0.95 * running[k] + 0.05 * v
            bar.update(1)
            if log_every and segmenter.step % log_every == 0:
                bar.set_postfix(loss=f"{running['loss']:.4f}", lr=f"{out['lr']:.2e}")
                history.append({"step": segmenter.step, "time": time.perf_counter() - t0,
                                **{k: round(v, 6) for k, v in running.items()}})
            if eval_fn is not None and eval_every and segmenter.step % eval_every == 0:
                history.append({"step": segmenter.step, "time": time.perf_counter() - t0,
                                **eval_fn(segmenter)})
    finally:
        batches.close()
        loader.close()
        bar.close()
    if eval_fn is not None and not (eval_every and segmenter.step % eval_every == 0 and taken):
        history.append({"step": segmenter.step, "time": time.perf_counter() - t0,
                        **eval_fn(segmenter)})
    return FitResult(steps=taken, seconds=time.perf_counter() - t0, history=history,
                     stopped_by=stopped_by)
