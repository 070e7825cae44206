"""The parts of a :class:`~l2l_env.env.PseudoLabelEnv`, built from an env config.

``gym.make("l2l/PseudoLabel-v0", **config)`` goes through :func:`build_segmenter` and
:func:`prepare_parts`: the segmenter (from ``segmenter`` overrides, or the one handed in),
optionally loaded from ``checkpoint`` and warmed up on the labeled bank for ``warmup_steps``
(:func:`l2l_env.warmup.warm_up`), and the banks of
:func:`~l2l_env.loop_data.load_loop_data`. A run that already holds these parts passes them to
:meth:`PseudoLabelEnv.from_parts` instead.
"""

from __future__ import annotations

from typing import Any

from l2l_env.loop_data import LoopData, load_loop_data, load_table_of
from l2l_env.objects import config_vocabulary
from l2l_env.warmup import warm_up, warmup_cache, warmup_key
from segmenter.config import SegmenterConfig
from segmenter.engine import Segmenter


def segmenter_config(config: Any, table: Any = None) -> SegmenterConfig:
    """The :class:`segmenter.SegmenterConfig` of an env config's ``segmenter`` overrides (its
    ``device`` and ``seed`` default to the env's). With object attributes, its
    ``object_classes`` are the sizes of their vocabularies in the train table (``table``, loaded
    when not given): :func:`l2l_env.objects.object_vocabulary`."""
    overrides = {"device": config.device, "seed": config.seed, **config.segmenter}
    attributes = config.resolved_object_attributes()
    if attributes:
        table = load_table_of(config, "train") if table is None else table
        classes = [len(v) for v in config_vocabulary(config, table).values()]
        given = overrides.get("object_classes")
        if given and [int(k) for k in given] != classes:
            raise ValueError(f"segmenter.object_classes={list(given)} does not match "
                             f"object_attributes={attributes}, whose "
                             f"vocabularies have {classes} classes; leave object_classes unset")
        overrides["object_classes"] = classes
    return SegmenterConfig.from_dict(overrides)


def build_segmenter(config: Any, text_encoder: Any = None, table: Any = None) -> Segmenter:
    """A fresh :class:`segmenter.Segmenter` from an env config's ``segmenter`` overrides (its
    ``device`` and ``seed`` default to the env's; see :func:`segmenter_config`, ``table`` the
    train table when already loaded); ``text_encoder``: one to use (e.g. a
    :class:`l2l_env.text_store.StoredTextEncoder`), else it loads its own on first use."""
    return Segmenter(segmenter_config(config, table), text_encoder=text_encoder)


def load_weights(segmenter: Any, path: str) -> None:
    """Load the weights (and training state) of the checkpoint at ``path`` into ``segmenter``."""
    loaded = Segmenter.load(path, text_encoder=segmenter.text_encoder)
    segmenter.load_state_dict(loaded.state_dict())


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
        cache = None
        if config.warmup_cache:
            key = warmup_key(config.to_dict(), segmenter.config.to_dict(), config.warmup_steps,
                             config.warmup_batch, config.seed)
            cache = warmup_cache(config.warmup_cache, key, table)
        warm_up(segmenter, data.labeled, config.warmup_steps, batch_size=config.warmup_batch,
                seed=config.seed, num_workers=config.num_workers, cache=cache)
    return data
