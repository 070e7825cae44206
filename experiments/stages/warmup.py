"""The warm-up stage: supervised steps on the labeled bank (:func:`l2l_env.warmup.warm_up`), in
checkpointed pieces of ``checkpoint_every`` steps, read from the ``warmup_cache`` when it holds
this warm-up."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from experiments.checkpoint import set_rng_state
from experiments.stages.base import RunContext, RunParts
from experiments.stages.evaluation import quick_eval
from l2l_env.warmup import warm_up


def run_warmup(run: RunContext, parts: RunParts) -> None:
    """Warm the segmenter up (or go on with an interrupted warm-up), timed and logged under
    ``warmup``; checkpoints ``warmup``."""
    run.open_logger("warmup", run.state.get("warmup_done") if run.reached("warmup") else None)
    with run.timed("warmup"):
        _warm_up(run, parts)


def _warm_up(run: RunContext, parts: RunParts) -> None:
    total = int(run.resolved["warmup_steps"])
    seg = parts.segmenter
    if run.stage == "warmup":
        seg.load_state_dict(run.state["segmenter"])
        set_rng_state(run.state["rng"])
    done = int(run.state.get("warmup_done", 0))
    if total == 0:
        return
    logger = run.logger
    bar = tqdm(total=total, initial=done, desc="warm-up", disable=not run.progress)

    def piece_done(steps: int, history: list[dict[str, Any]]) -> None:
        for rec in history:
            if "loss" in rec:
                logger.scalars("warmup", {k: v for k, v in rec.items() if k != "step"},
                               int(rec["step"]))
        run.save("warmup", segmenter=seg.state_dict(), warmup_done=steps)

    try:
        cached = warm_up(seg, parts.bank, total, batch_size=run.cfg.warmup_batch,
                         seed=run.cfg.seed + run.ctx.rank, num_workers=run.cfg.num_workers,
                         cache=parts.warm_cache, done=done, piece=run.cfg.checkpoint_every,
                         on_piece=piece_done, on_step=lambda: bar.update(1))
    finally:
        bar.close()
    if cached:
        parts.data_info["warmup_from_cache"] = str(parts.warm_cache.path)
        run.save("warmup", segmenter=seg.state_dict(), warmup_done=total)
    quick_eval(run, parts, step=0, tag="warmup")
