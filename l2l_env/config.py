"""Typed configuration of the pseudo-label environment, merged from ``gym.make`` keyword arguments."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from l2l_env.data import DATASETS, OBJECT_ATTRIBUTES
from l2l_env.labels import ACTION_FORMS
from l2l_env.rewards import REWARDS
from l2l_env.warmup import WarmupSettings
from segmenter.shared.settings import Runtime
from segmenter.shared.typed import strict_config

LABEL_SOURCES = ("teacher", "prior", "fused")
SEED_LIMIT = 2**32
"""Seeds are ints in ``[0, SEED_LIMIT)``: what every RNG a run seeds accepts (numpy's legacy one
included, which Stable-Baselines3 seeds)."""


@dataclass
class DataSettings:
    """Which data a run or an env works on: the data set, its root and loader options, the
    labeled/unlabeled split of its train images, ``num_workers``, the worker processes that
    assemble training batches (0: in the main process; the batches are the same either way), and
    ``object_attributes``, the attributes of the labeled images' annotated objects whose per-pixel
    classes train the segmenter's object-attribute heads (see :mod:`l2l_env.objects`; None: the
    data set's own, ``l2l_env.data.OBJECT_ATTRIBUTES``: SynthRef ``shape``, ``colour``, ``size``,
    the refer data sets ``category``; an empty list: none).
    Shared by :class:`EnvConfig` and the run config (through :class:`SharedSettings`), so each
    default has one source."""

    dataset: str = "synthref"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    label_ratio: float = 0.05
    split_seed: int = 0
    split_dir: str | None = None
    num_workers: int = 0
    object_attributes: list[str] | None = None

    def resolved_object_attributes(self) -> list[str]:
        """``object_attributes``, or the data set's own when it is None."""
        if self.object_attributes is not None:
            return list(self.object_attributes)
        return list(OBJECT_ATTRIBUTES.get(self.dataset, ()))


@dataclass
class SharedSettings(DataSettings, WarmupSettings, Runtime):
    """The settings the env and the run both have, each default written once: the data
    (:class:`DataSettings`), the warm-up (:class:`l2l_env.warmup.WarmupSettings`), ``seed`` and
    ``device`` (:class:`segmenter.shared.settings.Runtime`), ``cache_dir`` (data and prior cache;
    None: ``$L2L_CACHE_DIR`` or ``~/.cache/l2l``), ``prior_options`` (the prior provider's
    arguments) and ``segmenter`` (overrides of :class:`segmenter.SegmenterConfig`)."""

    cache_dir: str | None = None
    prior_options: dict[str, Any] = field(default_factory=dict)
    segmenter: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvConfig(SharedSettings):
    """Every setting of :class:`l2l_env.env.PseudoLabelEnv`, with its default.

    Data and priors
        dataset, data_root, data_options: which data set (``l2l_env.data.load_split``), its root and
        loader options (e.g. ``{"num_train": 2000}`` for SynthRef).
        label_ratio, split_seed, split_dir: the labeled/unlabeled split of the train images.
        prior_provider, prior_options, proposal: MLLM prior provider (``simulated``, ``mllm``,
        ``cache``), its options (e.g. ``{"preset": ...}``; none: the provider's defaults) and the
        soft-proposal kind.
        cache_dir: where generated data and priors are cached (None: ``$L2L_CACHE_DIR`` or ~/.cache).
    Segmenter
        segmenter: overrides of :class:`segmenter.SegmenterConfig` (ignored when a segmenter object is
        handed in). warmup_steps: supervised steps (batch warmup_batch) on the labeled split at
        construction (0: none); warmup_cache: a folder where the warmed-up segmenter is kept,
        keyed by everything it depends on (:func:`l2l_env.warmup.warmup_key`), so later envs
        and runs read it.
        checkpoint: a segmenter checkpoint to start from.
    Label construction and self-evolution
        grid_size: the action grid G.
        action: ``construct`` (per cell ignore / background / foreground / teacher,
        ``MultiDiscrete([4] * G*G)``) or ``select`` (keep a cell's ``label_source`` label or not,
        ``MultiBinary(G*G)``: the selection ablation). label_source: where a selected cell's label
        value comes from under ``select`` (teacher, prior, fused).
        calibration_every: every N-th loop step visits a held-out labeled probe sample, scored by
        the ``heldout`` reward and never trained on (0: none).
        update_interval: K, the segmenter trains every K steps on labeled data + the K selections.
        update_steps: optimiser steps per update; labeled_batch: labeled samples per optimiser step.
        pseudo_weight: loss weight of a pseudo-labeled pixel (labeled pixels weigh 1).
        pseudo_prior_dropout: the chance that a pseudo-labeled sample trains without its prior,
        so the pseudo-labels also teach the phrase (on top of the segmenter's ``prior_dropout``).
        episode_steps: steps per episode (then truncated). progress_horizon: steps at which the
        ``progress`` observation reaches 1.
    Reward
        reward: ``heldout`` (default), ``hybrid``, ``agreement``, ``utility`` or ``oracle``
        (analysis only).
        reward_options: keyword arguments of the reward (weights, margins). probe_size: labeled samples
        held out of training to measure the ``utility`` reward.
    Other
        include_image: add the down-sampled image to the observation. include_prior_score: add
        the prior provider's confidence in its grounding (``prior_score``). diagnostics: compute
        pseudo-label precision/recall against ground truth in ``info`` (never used for learning).
        oracle_obs: add the ground truth per cell to the observation (analysis only: the oracle
        agents; needs ``diagnostics``). device, seed.
    """

    prior_provider: str = field(default="simulated", metadata={"run_key": "prior"})
    proposal: str = "box"
    checkpoint: str | None = None
    grid_size: int = 32
    action: str = "construct"
    label_source: str = "teacher"
    calibration_every: int = 4
    update_interval: int = 32
    update_steps: int = 4
    labeled_batch: int = 16
    pseudo_weight: float = 1.0
    pseudo_prior_dropout: float = 0.0
    episode_steps: int = 128
    progress_horizon: int = 4096
    reward: str = "heldout"
    reward_options: dict[str, Any] = field(default_factory=dict)
    probe_size: int = 32
    include_image: bool = False
    include_prior_score: bool = False
    diagnostics: bool = True
    oracle_obs: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        checks = [
            (self.dataset in DATASETS, "dataset", f"one of {sorted(DATASETS)}"),
            (self.dataset == "synthref" or bool(self.data_root), "data_root",
             f"the refer data root ({self.dataset}/instances.json, {self.dataset}/refs(...).p) for "
             f"dataset={self.dataset!r}"),
            (0.0 < self.label_ratio <= 1.0, "label_ratio", "a fraction in (0, 1]"),
            (self.grid_size >= 1, "grid_size", "a positive integer"),
            (self.label_source in LABEL_SOURCES, "label_source", f"one of {LABEL_SOURCES}"),
            (self.action in ACTION_FORMS, "action", f"one of {ACTION_FORMS}"),
            (self.calibration_every >= 0, "calibration_every", "a non-negative integer"),
            (self.diagnostics or not self.oracle_obs, "oracle_obs",
             "false when diagnostics=false (the oracle observation needs the ground truth)"),
            (self.reward != "heldout" or self.calibration_every > 0, "reward",
             "another reward when calibration_every=0 (heldout scores calibration steps only)"),
            (self.update_interval >= 1, "update_interval", "a positive integer"),
            (self.update_steps >= 0, "update_steps", "a non-negative integer"),
            (self.labeled_batch >= 0, "labeled_batch", "a non-negative integer"),
            (self.pseudo_weight >= 0.0, "pseudo_weight", "a non-negative number"),
            (0.0 <= self.pseudo_prior_dropout <= 1.0, "pseudo_prior_dropout", "a chance in [0, 1]"),
            (self.episode_steps >= 1, "episode_steps", "a positive integer"),
            (self.progress_horizon >= 1, "progress_horizon", "a positive integer"),
            (self.reward in REWARDS, "reward", f"one of {sorted(REWARDS)}"),
            (self.probe_size >= 0, "probe_size", "a non-negative integer"),
            (self.warmup_steps >= 0, "warmup_steps", "a non-negative integer"),
            (self.warmup_batch >= 1, "warmup_batch", "a positive integer"),
            (self.num_workers >= 0, "num_workers", "a non-negative integer"),
            (self.object_attributes is None
             or len(set(self.object_attributes)) == len(self.object_attributes),
             "object_attributes", "None (the data set's own) or distinct attribute names"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ValueError(f"env config {key}={getattr(self, key)!r} is invalid; expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_config(config: dict[str, Any] | EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """Merge a dict (or config) and keyword overrides onto the defaults; unknown keys are errors."""
    base = dataclasses.asdict(config) if isinstance(config, EnvConfig) else dict(config or {})
    base.update(overrides)
    cfg = strict_config(EnvConfig, base, "env config")
    cfg.validate()
    return cfg
