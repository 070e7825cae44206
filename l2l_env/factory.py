"""The parts of a :class:`~l2l_env.env.PseudoLabelEnv`, built from an env config.

``gym.make("l2l/PseudoLabel-v0", **config)`` goes through :func:`build_segmenter` and :func:`prepare_parts`: the segmenter
(from ``segmenter`` overrides, or the one handed in), optionally loaded from ``checkpoint`` and
warmed up on the labeled bank for ``warmup_steps``, and the banks of
:func:`~l2l_env.loop_data.load_loop_data`. A run that already holds these parts passes them to
:meth:`PseudoLabelEnv.from_parts` instead.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2l_env.bank import SampleBank
from l2l_env.loop_data import LoopData, load_loop_data, load_table_of
from segmenter.shared.disk_cache import CacheFile


def segmenter_config(config: Any, table: Any = None):
    """The :class:`segmenter.SegmenterConfig` of an env config's ``segmenter`` overrides (its
    ``device`` and ``seed`` default to the env's). With object attributes, its
    ``object_classes`` are the sizes of their vocabularies in the train table (``table``, loaded
    when not given): :func:`l2l_env.objects.object_vocabulary`."""
    from segmenter import SegmenterConfig

    overrides = {"device": config.device, "seed": config.seed, **config.segmenter}
    attributes = config.resolved_object_attributes()
    if attributes:
        from l2l_env.loop_data import load_table_of
        from l2l_env.objects import config_vocabulary

        table = load_table_of(config, "train") if table is None else table
        classes = [len(v) for v in config_vocabulary(config, table).values()]
        given = overrides.get("object_classes")
        if given and [int(k) for k in given] != classes:
            raise ValueError(f"segmenter.object_classes={list(given)} does not match "
                             f"object_attributes={attributes}, whose "
                             f"vocabularies have {classes} classes; leave object_classes unset")
        overrides["object_classes"] = classes
    return SegmenterConfig.from_dict(overrides)


def build_segmenter(config: Any, text_encoder: Any = None, table: Any = None):
    """A fresh :class:`segmenter.Segmenter` from an env config's ``segmenter`` overrides (its
    ``device`` and ``seed`` default to the env's; see :func:`segmenter_config`, ``table`` the
    train table when already loaded); ``text_encoder``: one to use (e.g. a
    :class:`l2l_env.text_store.StoredTextEncoder`), else it loads its own on first use."""
    from segmenter import Segmenter

    return Segmenter(segmenter_config(config, table), text_encoder=text_encoder)


def load_weights(segmenter: Any, path: str) -> None:
    """Load the weights (and training state) of the checkpoint at ``path`` into ``segmenter``."""
    from segmenter import Segmenter

    loaded = Segmenter.load(path, text_encoder=segmenter.text_encoder)
    segmenter.load_state_dict(loaded.state_dict())


def warm_up(segmenter: Any, labeled: SampleBank, steps: int, seed: int, num_workers: int = 0) -> None:
    """Supervised burn-in: ``steps`` optimiser steps on the labeled bank (batches of up to 32,
    assembled by ``num_workers`` worker processes)."""
    from segmenter import fit

    fit(segmenter, labeled.images, labeled.priors, labeled.phrases, labeled.masks,
        steps=steps, batch_size=max(1, min(32, len(labeled))), seed=seed, progress=False,
        desc="warm-up", alt_priors=labeled.distractors, num_workers=num_workers,
        objects=labeled.objects)


def warmup_key(config: Any, segmenter_config: dict[str, Any], steps: int, batch_size: int,
               seed: int) -> str:
    """A hash of everything a supervised warm-up's result depends on: the data, the label split,
    the priors, the labeled bank, the segmenter's settings and the warm-up itself (runtime keys
    such as the device excluded). ``config`` is an env config (object or dict)."""
    from l2l_env.data.cache import config_key

    env = config if isinstance(config, dict) else config.to_dict()
    seg = {k: v for k, v in segmenter_config.items() if k not in ("device", "amp", "text_cache_size")}

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


def warm_start_cache(folder: str | os.PathLike, key: str, table: Any) -> CacheFile:
    """The warm-up cache of warm-up ``key`` (:func:`warmup_key`) in ``folder``, built from the
    train ``table`` (its :meth:`~l2l_env.data.RefTable.fingerprint`: other data under the same
    paths make it stale)."""
    return CacheFile(Path(folder) / f"warmup-{key}.pt", table.fingerprint(), "warm-up cache")


def read_warm_start(segmenter: Any, cache: CacheFile) -> bool:
    """Load a cached warmed-up segmenter; ``False`` when it is missing, or (with a warning
    naming the file and why) stale, corrupt or of another segmenter, so the caller warms up
    again and rewrites it with :func:`write_warm_start`."""
    if not cache.usable():
        return False
    try:
        segmenter.load_state_dict(torch.load(cache.path, map_location="cpu", weights_only=True))
    except Exception as err:  # a foreign file
        cache.rejected(err)
        return False
    return True


def write_warm_start(segmenter: Any, cache: CacheFile) -> None:
    """Write the warmed-up ``segmenter`` into ``cache`` (with its checksum)."""
    buf = io.BytesIO()
    torch.save(segmenter.state_dict(), buf)
    cache.write(buf.getvalue())


def prepare_parts(config: Any, segmenter: Any, table: Any = None) -> LoopData:
    """The banks of an env config for ``segmenter`` (``table``: the train table, when already
    loaded); then the checkpoint is loaded into it and the burn-in run when the config asks for
    them (read from / written to ``warmup_cache`` when set, the same cache ``l2l-run`` uses)."""
    table = load_table_of(config, "train") if table is None else table
    data = load_loop_data(config, int(segmenter.config.image_size), table=table,
                          distractors=segmenter.config.prior_swap > 0)
    if config.checkpoint:
        load_weights(segmenter, config.checkpoint)
    if config.warmup_steps:
        batch = max(1, min(32, len(data.labeled)))
        cache = None
        if config.warmup_cache:
            key = warmup_key(config, segmenter.config.to_dict(), config.warmup_steps, batch,
                             config.seed)
            cache = warm_start_cache(config.warmup_cache, key, table)
        if cache is None or not read_warm_start(segmenter, cache):
            warm_up(segmenter, data.labeled, config.warmup_steps, config.seed, config.num_workers)
            if cache is not None:
                write_warm_start(segmenter, cache)
    return data
