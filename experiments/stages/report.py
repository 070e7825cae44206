"""The report stage: ``OUT/results.json`` (config, metrics, pseudo-label summary, timing, data)
and, with a loop, the pictures of its pseudo-labels."""

from __future__ import annotations

import resource
import time
from typing import Any

from PIL import Image

from experiments import distributed as D
from experiments import outputs as O
from experiments.pictures import quality_plot, samples_picture
from experiments.report import write_json
from experiments.stages.base import RunContext, RunParts


def write_pictures(run: RunContext, parts: RunParts) -> None:
    """``OUT/pseudo_label_quality.png`` and ``OUT/samples.png`` (runs with a loop)."""
    if parts.env is None:
        return
    cfg, curves = run.cfg, parts.stats.curves
    if any("pl_iou_label" in c for c in curves):
        title = f"{cfg.dataset}, {cfg.label_ratio:.0%} labels, agent {cfg.agent}"
        quality_plot(curves, run.out / O.QUALITY_PLOT, title)
    env = parts.env.unwrapped
    recent = list(parts.recorder.recent)
    if recent and env.config.diagnostics:
        truths = [env.diagnostic_mask(int(c["row"])) for c in recent]
        pic = samples_picture(parts.segmenter, env.loop_bank, recent, truths)
        Image.fromarray(pic).save(run.out / O.SAMPLES)


def report(run: RunContext, parts: RunParts, metrics: dict[str, dict[str, float]],
           dist_info: dict[str, Any] | None, t_wall: float) -> dict[str, Any]:
    """Write the pictures and ``results.json`` (main process), checkpoint ``done``; returns the
    results."""
    if run.ctx.is_main:
        with run.timed("eval"):
            write_pictures(run, parts)
    D.barrier(run.ctx)
    timing = run.timing
    timing["wall_s_this_process"] = time.perf_counter() - t_wall
    steps = parts.stats.steps
    summary = dict(timing)
    summary["total_s"] = sum(v for k, v in timing.items() if k.endswith("_s")
                             and k not in ("wall_s_this_process", "total_s"))
    if steps:
        summary["loop_s_per_1000_samples"] = 1000.0 * timing.get("loop_s", 0.0) / steps
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results = {"config": run.config_dict, "metrics": metrics,
               "pseudo_labels": parts.stats.summary(), "timing": summary,
               "data": parts.data_info}
    if dist_info:
        results["distributed"] = dist_info
    if run.ctx.is_main:
        write_json(run.out / O.RESULTS, results)
    run.save("done", stats=parts.stats.state_dict(), loop_done=steps)
    return results
