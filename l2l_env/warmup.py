"""The supervised warm-up (burn-in) of the segmenter on the labeled bank, and its cache.

One function, :func:`warm_up`, serves both callers: ``gym.make(..., warmup_steps=N)`` (through
:func:`l2l_env.factory.prepare_parts`) and the warm-up stage of ``l2l-run``
(:mod:`experiments.stages.warmup`), which runs it in checkpointed pieces. Batch ``k`` is a
function of the segmenter's step alone, so pieces give the same segmenter as one call. A warmed-up
segmenter can be kept in a folder (``warmup_cache``), keyed by everything its result depends on
(:func:`warmup_key`), so that later envs and runs read it instead of training again.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from l2l_env.bank import SampleBank
from l2l_env.data.cache import config_key
from l2l_env.data.types import RefTable
from segmenter.shared.disk_cache import CacheFile
from segmenter.train import fit

PieceDone = Callable[[int, list[dict[str, Any]]], None]
"""Called after each piece with the steps done so far and the piece's training history."""


@dataclass
class WarmupSettings:
    """``warmup_steps`` supervised optimiser steps of batch ``warmup_batch`` on the labeled split
    (0: none); ``warmup_cache``: a folder where warmed-up segmenters are kept by a hash of
    everything the warm-up depends on (:func:`warmup_key`), so runs and envs that share it warm up
    once (the result is the same either way)."""

    warmup_steps: int = 0
    warmup_batch: int = 32
    warmup_cache: str | None = None


def warmup_key(env: dict[str, Any], segmenter_config: dict[str, Any], steps: int,
               batch_size: int, seed: int) -> str:
    """A hash of everything a warm-up's result depends on: the data, the label split, the
    priors, the labeled bank (``env``: an env config as a dict), the segmenter's settings and the
    warm-up itself (runtime keys such as the device excluded)."""
    seg = {k: v for k, v in segmenter_config.items()
           if k not in ("device", "amp", "text_cache_size")}

    def path(p: str | None) -> str | None:
        return os.path.abspath(p) if p else None

    parts = {
        "data": [env["dataset"], path(env["data_root"]), env["data_options"]],
        "split": [env["label_ratio"], env["split_seed"], path(env["split_dir"])],
        "prior": [env["prior_provider"], env["prior_options"], env["proposal"]],
        "bank": [env["probe_size"], env["grid_size"], env.get("object_attributes")],
        "segmenter": seg,
        "warmup": [steps, batch_size, seed], "version": 1,
    }
    return config_key(parts)


def warmup_file(folder: str | os.PathLike, key: str) -> Path:
    """Where the warmed-up segmenter of warm-up ``key`` is kept in ``folder``."""
    return Path(folder) / f"warmup-{key}.pt"


def warmup_cache(folder: str | os.PathLike, key: str, table: RefTable) -> CacheFile:
    """The cache file of warm-up ``key`` in ``folder``, built from the train ``table`` (its
    fingerprint: other data under the same paths make it stale)."""
    return CacheFile(warmup_file(folder, key), table.fingerprint(), "warm-up cache")


def read_warm_start(segmenter: Any, cache: CacheFile) -> bool:
    """Load a cached warmed-up segmenter; ``False`` when it is missing, or (with a warning
    naming the file and why) stale, corrupt or of another segmenter."""

    def load(file: Path) -> bool:
        segmenter.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        return True

    return cache.read(load, errors=(Exception,)) is not None  # Exception: a foreign file


def write_warm_start(segmenter: Any, cache: CacheFile) -> None:
    """Write the warmed-up ``segmenter`` into ``cache`` (with its checksum)."""
    buf = io.BytesIO()
    torch.save(segmenter.state_dict(), buf)
    cache.write(buf.getvalue())


def warm_up(segmenter: Any, labeled: SampleBank, steps: int, *, batch_size: int, seed: int,
            num_workers: int = 0, cache: CacheFile | None = None, done: int = 0,
            piece: int = 0, on_piece: PieceDone | None = None,
            on_step: Callable[[], None] | None = None) -> bool:
    """Train ``segmenter`` for the ``steps - done`` remaining warm-up steps on the ``labeled``
    bank (batches of up to ``batch_size``, assembled by ``num_workers`` worker processes), in
    pieces of ``piece`` steps (0: one piece), calling ``on_piece`` after each and ``on_step``
    after every step. With a ``cache``, a fresh warm-up (``done == 0``) is read from it when it
    holds one, and written to it at the end. Returns whether it came from the cache."""
    if steps <= 0:
        return False
    if cache is not None and done == 0 and read_warm_start(segmenter, cache):
        return True
    batch = max(1, min(batch_size, len(labeled)))
    piece = piece or steps

    def tick(_segmenter: Any) -> dict[str, float]:
        if on_step is not None:
            on_step()
        return {}

    while done < steps:
        res = fit(segmenter, labeled.images, labeled.priors, labeled.phrases, labeled.masks,
                  steps=min(piece, steps - done), alt_priors=labeled.distractors,
                  num_workers=num_workers, objects=labeled.objects, batch_size=batch, seed=seed,
                  log_every=10, progress=False, desc="warm-up",
                  eval_fn=tick if on_step is not None else None, eval_every=1)
        done += res.steps
        if on_piece is not None:
            on_piece(done, res.history)
    if cache is not None:
        write_warm_start(segmenter, cache)
    return False
