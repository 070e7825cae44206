"""The samples a self-training run works on, loaded once and handed to the env as one object.

:func:`load_loop_data` reads the train split of the data set, its priors and the label split, and
builds three banks: the *labeled* training samples, a small held-out labeled *probe* (never
trained on: the utility reward and the calibration steps score against it) and the *unlabeled*
pool, whose masks go into a :class:`~l2l_env.bank.GroundTruthVault` that only diagnostics and the
analysis-only oracles open. :meth:`LoopData.shard` gives one rank of a distributed run its share.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from l2l_env.bank import GroundTruthVault, SampleBank, build_bank, train_image_store
from l2l_env.data import LabelSplit, RefSplit, label_split, load_table
from l2l_env.objects import config_vocabulary
from l2l_env.priors import load_mistake_priors, load_priors
from segmenter import SegmenterConfig


def data_root(config: Any) -> str | None:
    """Where ``config.dataset`` lives: ``config.data_root``, or for SynthRef (which is generated
    into the cache) ``config.cache_dir`` when no root is given."""
    if config.data_root or config.dataset != "synthref":
        return config.data_root
    return config.cache_dir


def load_table_of(config: Any, split: str):
    """The :class:`~l2l_env.data.RefTable` of ``split`` of ``config.dataset``."""
    return load_table(config.dataset, split, data_root=data_root(config), **config.data_options)


@dataclass
class LoopData:
    """The banks of one run: labeled, probe (held-out labeled) and unlabeled, plus the vault."""

    labeled: SampleBank
    probe: SampleBank
    unlabeled: SampleBank
    vault: GroundTruthVault
    label_split: LabelSplit

    def shard(self, rank: int, world_size: int) -> tuple[LoopData, dict[str, int]]:
        """This rank's share of the unlabeled pool (every ``world_size``-th referred object from
        ``rank``), ground truth with it; returns ``(data, {"rank", "refs", "samples"})``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"shard(rank={rank}, world_size={world_size}): expected 0 <= rank < world_size")
        bank = self.unlabeled
        groups = [g for i, g in enumerate(bank.ref_rows) if i % world_size == rank]
        if not groups:
            raise ValueError(f"rank {rank}: the unlabeled pool ({bank.num_refs} referred objects) "
                             f"is too small for {world_size} ranks")
        rows = [r for g in groups for r in g]
        data = replace(self, unlabeled=bank.take(rows), vault=self.vault.take(rows))
        return data, {"rank": rank, "refs": len(groups), "samples": len(rows)}


def load_train_priors(config: Any, table: Any):
    """The priors of the train split's sentences (computed once, then read from the cache)."""

    return load_priors(config.dataset, "train", RefSplit(table, "per_sentence"),
                       config.prior_provider, cache_dir=config.cache_dir, **config.prior_options)


def load_train_mistakes(config: Any, table: Any):
    """Wrong priors of the train split's sentences, drawn like an MLLM's errors (the labeled
    bank's distractors for the segmenter's ``prior_swap``; computed once, then cached)."""

    return load_mistake_priors(config.dataset, "train", RefSplit(table, "per_sentence"),
                               cache_dir=config.cache_dir, seed=config.split_seed + 1)


def load_loop_data(config: Any, image_size: int, *, table: Any = None, priors: Any = None,
                   distractors: bool | None = None) -> LoopData:
    """Banks of the train split for an env config (:class:`l2l_env.config.EnvConfig`) at the
    segmenter's input size; ``table``/``priors``: the train split's, when already loaded. Raises
    ``ValueError`` when the label split leaves no unlabeled images or calibration steps find no
    held-out labeled sample. With ``distractors`` the labeled bank carries distractor priors
    (:attr:`~l2l_env.bank.SampleBank.distractors`, for the segmenter's ``prior_swap``; None: when
    the config's segmenter trains with them, ``prior_swap`` > 0)."""
    cfg = config
    if distractors is None:
        distractors = SegmenterConfig.from_dict(dict(cfg.segmenter)).prior_swap > 0
    table = load_table_of(cfg, "train") if table is None else table
    priors = load_train_priors(cfg, table) if priors is None else priors
    split = label_split(cfg.dataset, table.image_ids, cfg.label_ratio, seed=cfg.split_seed,
                        split_dir=cfg.split_dir)
    if not split.unlabeled:
        raise ValueError(f"label_ratio={cfg.label_ratio} leaves no unlabeled train images")
    S, G = image_size, cfg.grid_size
    images = train_image_store(table, S, cfg.cache_dir)  # one store: both banks read from it
    vocabulary = config_vocabulary(cfg, table)  # of the whole table: stable classes
    labeled = build_bank(table.subset(split.labeled), priors, S, G, proposal=cfg.proposal,
                         distractors=load_train_mistakes(cfg, table) if distractors else None,
                         images=images, objects=vocabulary)
    # Hold a few labeled objects out of training: the probe of the utility and heldout rewards.
    order = np.random.default_rng(cfg.split_seed).permutation(labeled.num_refs)
    n_probe = min(cfg.probe_size, labeled.num_refs // 4)
    probe_refs, train_refs = order[:n_probe], order[n_probe:]
    probe = labeled.take([r for i in probe_refs for r in labeled.ref_rows[i]])
    train = labeled.take([r for i in train_refs for r in labeled.ref_rows[i]])
    unlabeled = build_bank(table.subset(split.unlabeled), priors, S, G, proposal=cfg.proposal,
                           with_masks=cfg.diagnostics, images=images)
    vault = GroundTruthVault(unlabeled.masks)
    unlabeled.masks = None  # from here on only the vault holds them
    if cfg.calibration_every and len(probe) == 0:
        raise ValueError(f"calibration_every={cfg.calibration_every} needs held-out labeled "
                         f"samples, but probe_size={cfg.probe_size} with "
                         f"{labeled.num_refs} labeled objects leaves none")
    return LoopData(labeled=train, probe=probe, unlabeled=unlabeled, vault=vault, label_split=split)


def load_supervised_bank(config: Any, image_size: int, *, table: Any, priors: Any,
                         distractors: bool) -> SampleBank:
    """The fully supervised run's bank: every train sample with its mask (``label_ratio`` 1),
    with distractor priors for the segmenter's ``prior_swap`` when ``distractors``."""
    return build_bank(table, priors, image_size, config.grid_size, proposal=config.proposal,
                      distractors=load_train_mistakes(config, table) if distractors else None,
                      cache_root=config.cache_dir, objects=config_vocabulary(config, table))
