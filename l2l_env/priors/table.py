"""The priors of a split, computed once and read back by sample id: :func:`load_priors`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from l2l_env.data.cache import cache_dir as _cache_root
from l2l_env.data.types import RefSplit
from l2l_env.priors.base import Grounding
from l2l_env.priors.cache import (CachedPriors, MissingPriorError, compute_priors, read_priors,
                                  shard_files, source_of)
from l2l_env.priors.proposals import VECTORISED, grounding_arrays, proposal_maps, soft_proposals
from l2l_env.priors.registry import make_provider, provider_key
from l2l_env.priors.simulated import MISTAKES_PRESET


class PriorTable:
    """Groundings by sample id, with array views for fast batched proposals.

    ``boxes`` (N, 4) ``xywh`` (NaN rows: no prior), ``image_sizes`` (N, 2) ``(h, w)`` and
    ``scores`` (N,) are aligned with ``ids``.
    """

    def __init__(self, groundings: dict[str, Grounding], path: Path | None = None) -> None:
        self.ids: list[str] = list(groundings)
        self._groundings = groundings
        self._row = {sid: i for i, sid in enumerate(self.ids)}
        self.path = path
        self.boxes, self.image_sizes, self.scores = grounding_arrays(list(groundings.values()))
        self._has_points = any(g.points for g in groundings.values())

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._row

    def __getitem__(self, sample_id: str) -> Grounding:
        return self.get(sample_id)

    def get(self, sample_id: str) -> Grounding:
        """The grounding of ``sample_id`` (``"ref_id:sent_id"``); a clear error if absent."""
        try:
            return self._groundings[sample_id]
        except KeyError:
            raise MissingPriorError(f"no prior for sample id {sample_id!r} in this table of "
                                    f"{len(self)} ({self.path or 'in memory'})") from None

    def rows(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``sample_ids`` in the array views."""
        try:
            return np.fromiter((self._row[s] for s in sample_ids), dtype=np.int64,
                               count=len(sample_ids))
        except KeyError as err:
            raise MissingPriorError(f"no prior for sample id {err.args[0]!r} in this table of "
                                    f"{len(self)} ({self.path or 'in memory'})") from None

    def no_prior(self, sample_ids: Sequence[str]) -> np.ndarray:
        """(B,) bool: which samples have no prior (their proposal is flat)."""
        return ~np.isfinite(self.boxes[self.rows(sample_ids)]).all(axis=1)

    def proposals(self, sample_ids: Sequence[str], height: int, width: int, kind: str = "box",
                  **params: Any) -> np.ndarray:
        """(B, H, W) float32 soft proposals (see :mod:`l2l_env.priors.proposals`)."""
        rows = self.rows(sample_ids)
        if kind in VECTORISED:
            points = None
            if kind == "gaussian" and self._has_points:
                points = [self._groundings[self.ids[r]].points for r in rows]
            return proposal_maps(self.boxes[rows], height, width, kind,
                                 image_sizes=self.image_sizes[rows], scores=self.scores[rows],
                                 points=points, **params)
        return soft_proposals([self._groundings[self.ids[r]] for r in rows], height, width, kind,
                              **params)


def priors_path(dataset: str, split: str, provider: str, cache_dir: str | os.PathLike | None = None,
                **provider_kwargs: Any) -> Path:
    """Where :func:`load_priors` caches a split's priors for this provider configuration."""
    key = provider_key(provider, **provider_kwargs)
    return _cache_root(cache_dir) / "priors" / dataset / split / f"{key}.jsonl"


def load_priors(dataset: str, split: str, samples: RefSplit, provider: str = "simulated", *,
                cache_dir: str | os.PathLike | None = None, progress: bool = False,
                **provider_kwargs: Any) -> PriorTable:
    """The priors of every sentence of ``samples.table``, computed once and cached.

    Groundings are computed for ``RefSplit(samples.table, "per_sentence")`` (every sentence, so
    any sampling mode finds its prior) into
    ``cache_dir/priors/<dataset>/<split>/<provider>-<config hash>.jsonl``; a later call (or one
    after an interruption) reads the file and computes only what is missing. With
    ``provider="cache"`` the groundings come from ``path=FILE`` and a missing sample id is an error.
    ``provider_kwargs`` go to the provider (e.g. ``preset=``, ``seed=`` for ``simulated``).
    """
    table = getattr(samples, "table", None)
    if table is None:
        raise TypeError(f"load_priors needs a RefSplit (with .table), got {type(samples).__name__}")
    source = source_of(RefSplit(table, "per_sentence"))
    if provider == "cache":
        cached = CachedPriors(**provider_kwargs)
        groundings = cached.lookup(source.ids, source.checks)
        return PriorTable(dict(zip(source.ids, groundings)), path=cached.path)
    path = priors_path(dataset, split, provider, cache_dir, **provider_kwargs)
    entries = None
    if path.exists() or shard_files(path):  # shards: written by a sharded ``l2l-priors`` run
        entries = read_priors(path)
        if all(entries.checks.get(sid) == c for sid, c in zip(source.ids, source.checks)):
            return PriorTable({sid: entries.groundings[sid] for sid in source.ids}, path=path)
    compute_priors(make_provider(provider, **provider_kwargs), source, path, split=split,
                   header={"dataset": dataset, "split": split}, progress=progress, done=entries)
    entries = read_priors(path)
    return PriorTable({sid: entries.groundings[sid] for sid in source.ids}, path=path)


def load_mistake_priors(dataset: str, split: str, samples: RefSplit, *,
                        cache_dir: str | os.PathLike | None = None, seed: int = 0,
                        progress: bool = False) -> PriorTable:
    """Wrong priors for every sentence of ``samples``, drawn like a strong MLLM's errors: three in
    four a jittered box on another object of the image (preferring objects that share the
    referent's category and attributes), the rest a misplaced box. The segmenter's training
    swaps them in (``prior_swap``) so that it learns when not to trust a prior. Needs the
    samples' annotated objects (SynthRef scenes, the refer data's ``instances.json``); cached
    like any prior table."""
    return load_priors(dataset, split, samples, "simulated", cache_dir=cache_dir,
                       progress=progress, preset=MISTAKES_PRESET, seed=seed)
