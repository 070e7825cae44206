"""What every stage of a run shares: the run's context (config, output folder, checkpoint,
timing, TensorBoard writer) and the parts the data stage builds (segmenter, banks, env)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import distributed as D
from experiments.checkpoint import rng_state, save_checkpoint
from experiments.config import RunConfig
from experiments.logs import RunLogger, tb_dir
from experiments.recorder import PseudoLabelStats, StepRecorder
from l2l_env.bank import SampleBank
from l2l_env.env import PseudoLabelEnv
from l2l_env.evaluation import EvalSplit
from segmenter.engine import Segmenter
from segmenter.shared.disk_cache import CacheFile

STAGES = ("start", "warmup", "loop", "eval", "done")
"""The checkpoint's ``stage``: the last stage a run checkpointed, in the order they run."""


@dataclass
class RunContext:
    """One run's settings and bookkeeping: ``state`` is the last checkpoint (empty on a fresh
    run); :meth:`save` writes a new one."""

    cfg: RunConfig
    config_dict: dict[str, Any]
    ctx: D.DistContext
    device: str
    ckpt_file: Path
    state: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    logger: RunLogger | None = None

    @property
    def resolved(self) -> dict[str, Any]:
        return self.config_dict["resolved"]

    @property
    def out(self) -> Path:
        return Path(self.resolved["out"])

    @property
    def progress(self) -> bool:
        return bool(self.cfg.progress) and self.ctx.is_main

    @property
    def has_loop(self) -> bool:
        """A semi-supervised run (its training has a self-evolving loop after the warm-up)."""
        return self.resolved["mode"] == "semi-supervised"

    @property
    def stage(self) -> str:
        """The stage of the last checkpoint (``start`` on a fresh run)."""
        return self.state.get("stage", "start")

    def reached(self, stage: str) -> bool:
        """Whether the last checkpoint is at or past ``stage``."""
        return STAGES.index(self.stage) >= STAGES.index(stage)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the seconds of the ``with`` block to ``timing[name + "_s"]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"{name}_s"
            self.timing[key] = self.timing.get(key, 0.0) + time.perf_counter() - t0

    def save(self, stage: str, **extra: Any) -> None:
        """Checkpoint the run at ``stage`` with the stage's ``extra`` state."""
        state = {"stage": stage, "config": self.config_dict, "timing": dict(self.timing),
                 "rng": rng_state(), **extra}
        save_checkpoint(self.ckpt_file, state)
        self.state = state

    def open_logger(self, name: str, purge_step: int | None) -> RunLogger:
        """The TensorBoard writer of one stage (``OUT/tb/<name>``); on resume the interrupted
        run's events from ``purge_step`` on are dropped."""
        self.close_logger()
        self.logger = RunLogger(tb_dir(self.out) / name, enabled=self.ctx.is_main,
                                purge_step=purge_step)
        return self.logger

    def close_logger(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


@dataclass
class RunParts:
    """What the data stage builds: the segmenter, the labeled ``bank`` it warms up on, the eval
    splits, and for a semi-supervised run the env of the loop (its ``recorder`` wraps it)."""

    segmenter: Segmenter
    bank: SampleBank
    eval_data: dict[str, EvalSplit]
    data_info: dict[str, Any]
    phrases: list[str]
    """Every phrase of the run, sorted (their features are encoded once, up front)."""
    warm_cache: CacheFile | None = None
    env: PseudoLabelEnv | None = None
    recorder: StepRecorder | None = None
    stats: PseudoLabelStats = field(default_factory=PseudoLabelStats)
    """The pseudo-label statistics of the loop (empty without one)."""
