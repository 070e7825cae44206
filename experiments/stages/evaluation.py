"""The evaluation stage: the end of training (batch-norm buffers equalised across ranks, the final
segmenter and agent saved) and the metrics of the final segmenter on every eval split; also the
quick evaluations with pictures that the warm-up and the loop write to TensorBoard."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from agents import Agent
from experiments import distributed as D
from experiments import outputs as O
from experiments.checkpoint import agent_root, prune_agents, save_agent_dir
from experiments.logs import eval_panels, selection_panels
from experiments.report import METRIC_KEYS
from experiments.stages.base import RunContext, RunParts
from l2l_env.evaluation import evaluate_segmenter


def finish_training(run: RunContext, parts: RunParts, agent: Agent | None) -> dict[str, Any] | None:
    """Equalise batch-norm buffers across ranks, save the final segmenter and agent, and
    checkpoint the start of evaluation; returns the distributed summary (None: one process)."""
    seg, ctx = parts.segmenter, run.ctx
    D.sync_buffers(seg, ctx)
    digests = D.gather(D.parameter_digest(seg.model), ctx)
    shards = D.gather(parts.data_info.get("shard", {}), ctx)
    dist_info = {"world_size": ctx.world_size, "backend": ctx.backend,
                 "param_digests": digests, "in_sync": len(set(digests)) == 1,
                 "shards": shards} if ctx.enabled else None
    if ctx.is_main:
        seg.save(run.out / O.SEGMENTER)
        if agent is not None and agent.savable:
            save_agent_dir(agent, run.out / O.AGENT)
    run.save("eval", segmenter=seg.state_dict(), stats=parts.stats.state_dict(),
             loop_done=parts.stats.steps, dist_info=dist_info)
    if ctx.is_main:
        prune_agents(agent_root(run.out, ctx.rank), None)
    return dist_info


def quick_eval(run: RunContext, parts: RunParts, step: int, tag: str) -> None:
    """A fast evaluation on ``eval_subset`` samples of the first eval split, with pictures."""
    if not run.ctx.is_main or run.logger.writer is None:
        return
    split = run.resolved["eval_splits"][0]
    m = evaluate_segmenter(parts.segmenter, parts.eval_data[split],
                           batch_size=run.cfg.eval_batch, max_samples=run.cfg.eval_subset)
    run.logger.scalars(f"eval_quick/{split}", {k: m[k] for k in METRIC_KEYS}, step)
    log_images(run, parts, step)


def log_images(run: RunContext, parts: RunParts, step: int) -> None:
    """``log_images`` samples to TensorBoard: the loop's recent constructions (with a loop) and
    labeled samples with prior and prediction."""
    n, logger = run.cfg.log_images, run.logger
    if not n or logger.writer is None:
        return
    if parts.recorder is not None and parts.recorder.recent:
        recent = list(parts.recorder.recent)[-n:]
        pic = selection_panels(parts.segmenter, parts.env.unwrapped.loop_bank, recent)
        logger.image("samples/unlabeled_selection", pic, step)
    bank = parts.bank
    rows = list(range(min(n, len(bank))))
    pic = eval_panels(parts.segmenter, bank.images[rows], bank.priors[rows],
                      [bank.phrases[r] for r in rows], bank.masks[rows])
    logger.image("samples/labeled", pic, step)


def evaluate(run: RunContext, parts: RunParts) -> dict[str, dict[str, float]]:
    """The final segmenter's metrics on every eval split (main process; others: empty)."""
    metrics: dict[str, dict[str, float]] = {}
    if not run.ctx.is_main:
        return metrics
    step = int(run.resolved["loop_steps"])
    with run.timed("eval"):
        splits = run.resolved["eval_splits"]
        for split in tqdm(splits, desc="evaluation", disable=not run.progress, leave=False):
            m = evaluate_segmenter(parts.segmenter, parts.eval_data[split],
                                   batch_size=run.cfg.eval_batch)
            metrics[split] = {k: float(v) for k, v in m.items()}
            run.logger.scalars(f"eval/{split}", metrics[split], step)
        log_images(run, parts, step)
    return metrics
