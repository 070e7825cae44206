"""One full run, resumable at any point: a thin driver that sequences the stages, checkpoints
and resumes them.

    data (experiments.stages.data) -> warm-up (experiments.stages.warmup)
    -> loop (experiments.stages.loop; semi-supervised runs only)
    -> evaluation (experiments.stages.evaluation) -> report (experiments.stages.report)

The checkpoint ``OUT/checkpoint.pt`` names the last stage reached (``experiments.stages.base.
STAGES``); a resumed run rebuilds the data stage's parts identically and continues with the
stage the checkpoint names.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from agents import Agent
from experiments import distributed as D
from experiments import outputs as O
from experiments.checkpoint import agent_root, checkpoint_path, load_checkpoint, set_rng_state
from experiments.config import RunConfig, differences
from experiments.recorder import PseudoLabelStats
from experiments.report import write_json
from experiments.stages.base import RunContext, RunParts
from experiments.stages.data import build_parts
from experiments.stages.evaluation import evaluate, finish_training
from experiments.stages.loop import KILL_ENV, LoopStage, saved_agent
from experiments.stages.report import report
from experiments.stages.warmup import run_warmup
from segmenter.shared.files import sweep_temporaries

__all__ = ["KILL_ENV", "Runner", "read_results"]


def read_results(path: Path) -> dict[str, Any] | None:
    """The results of a finished run, or ``None`` when ``path`` is missing or not a JSON
    object (garbage, cut short)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Runner:
    """One run of ``cfg``; :meth:`run` executes (or resumes) it and returns the results dict.

    :param config_dict: the resolved config (``experiments.config.resolved_dict``).
    :param resume: continue from ``OUT/checkpoint.pt`` when it exists.
    :param ctx: the distributed context (single process by default).
    :param device: this process's torch device.
    """

    def __init__(self, cfg: RunConfig, config_dict: dict[str, Any], *, resume: bool = False,
                 ctx: D.DistContext | None = None, device: str | None = None) -> None:
        ctx = ctx or D.DistContext()
        out = Path(config_dict["resolved"]["out"])
        self.run_ctx = RunContext(cfg, config_dict, ctx, device or cfg.device,
                                  checkpoint_path(out, ctx.rank))
        run = self.run_ctx
        if resume and run.ckpt_file.exists():
            run.state = load_checkpoint(run.ckpt_file)
            diff = differences(run.state["config"], config_dict)
            if diff:
                raise ValueError(f"{out}: the checkpoint was made with another config "
                                 f"(differs in {diff}); resume with the same settings or choose "
                                 f"another --out")
        run.timing = dict(run.state.get("timing", {}))
        self.parts: RunParts | None = None
        """What the data stage built (after :meth:`prepare`)."""
        self.agent: Agent | None = None
        """The checkpoint's agent, when resuming the loop."""
        self.final: dict[str, Any] | None = None
        """The final segmenter's state, when a finished run is evaluated again."""
        self._t_wall = time.perf_counter()

    @property
    def out(self) -> Path:
        return self.run_ctx.out

    @property
    def finished(self) -> bool:
        """Done, with readable results (a lost or garbage ``results.json`` is evaluated again
        from the final segmenter)."""
        run = self.run_ctx
        return run.stage == "done" and (
            read_results(self.out / O.RESULTS) is not None or not run.ctx.is_main)

    def prepare(self) -> None:
        """The data stage, and the checkpoint's agent: everything that can fail on a bad data
        root, a corrupt cache or a lost file, before any long work."""
        if self.parts is not None or self.finished:
            return
        run = self.run_ctx
        self._t_wall = time.perf_counter()
        if run.stage == "done":  # finished, its results lost: evaluated again
            self.final = self.final_segmenter()
        self.out.mkdir(parents=True, exist_ok=True)
        # Temporaries of writes cut short by a kill (their writer is gone).
        for folder in (self.out, agent_root(self.out, run.ctx.rank), run.cfg.warmup_cache):
            if folder:
                sweep_temporaries(folder)
        self.parts = build_parts(run)
        self.agent = saved_agent(run)

    def final_segmenter(self) -> dict[str, Any]:
        """The state of ``OUT/segmenter.pt`` of a finished run whose results were lost (a clear
        error when it is missing or unreadable too)."""
        file = self.out / O.SEGMENTER
        print(f"l2l-run: {self.out} finished but its {O.RESULTS} is missing or unreadable; "
              f"evaluating its {O.SEGMENTER} again", file=sys.stderr)
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # missing, cut short or garbage
            raise ValueError(f"{self.out} finished but its {O.RESULTS} is lost and {file} cannot "
                             f"be read ({type(err).__name__}: {err}); start the run again with "
                             "--overwrite") from None

    def run(self) -> dict[str, Any]:
        """Run (or continue) every remaining stage; returns the results."""
        if self.finished:
            return read_results(self.out / O.RESULTS) or {}
        run = self.run_ctx
        resumed = bool(run.state)
        self.prepare()
        if resumed:
            run.timing["resumes"] = run.timing.get("resumes", 0) + 1
        if run.ctx.is_main:
            write_json(self.out / O.CONFIG, run.config_dict)
        trained = run.reached("eval")
        try:
            if trained:
                dist_info = self.restore_evaluation()
            else:
                if not run.reached("loop"):
                    run_warmup(run, self.parts)
                agent = (LoopStage.begin(run, self.parts, self.agent).run() if run.has_loop
                         else None)
                dist_info = finish_training(run, self.parts, agent)
            set_rng_state(run.state["rng"])
            run.open_logger("eval", 0 if trained else None)
            metrics = evaluate(run, self.parts)
            return report(run, self.parts, metrics, dist_info, self._t_wall)
        finally:
            run.close_logger()

    def restore_evaluation(self) -> dict[str, Any] | None:
        """The trained segmenter and statistics of an ``eval`` or ``done`` checkpoint."""
        run, parts = self.run_ctx, self.parts
        parts.segmenter.load_state_dict(run.state["segmenter"] if run.stage == "eval"
                                        else self.final)
        parts.stats = PseudoLabelStats.from_state(run.state["stats"])
        return run.state.get("dist_info")
