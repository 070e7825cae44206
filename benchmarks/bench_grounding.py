"""Learning curves of segmenter variants on SynthRef: how fast does the phrase do real work?

Each variant trains fully supervised on every SynthRef train sentence (its own process, one
thread, ``--minutes`` of wall time, the poly schedule sized by ``--step-seconds``) and is scored
every ``--every`` steps on a fixed subset of 400 val sentences (EMA teacher): mIoU overall, where
the simulated MLLM's prior is right / wrong, and by phrase kind. A variant is a set of
:class:`segmenter.SegmenterConfig` overrides plus, optionally, ``objects`` (train the
object-attribute heads on SynthRef's scene annotations: shape, colour, size per pixel). This is the
fast proxy the text path was chosen with; ``bench_segmenter.py`` confirms the winners.

    python benchmarks/bench_grounding.py --variants base_np,words_np --minutes 9 \\
        --out benchmarks/results/grounding_curves.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS: dict[str, dict[str, Any]] = {
    # "_np": trained and evaluated without any prior: the phrase alone must find the object
    "base_np": {"config": {"use_prior": False, "reason_layers": 0, "text_head": False}},
    "context_np": {"config": {"use_prior": False, "reason_layers": 0, "text_head": True,
                              "spatial_context": 4}},
    "head_np": {"config": {"use_prior": False, "reason_layers": 0, "text_head": True}},
    "objects_np": {"config": {"use_prior": False, "reason_layers": 0, "text_head": True},
                   "objects": ["shape", "colour", "size"]},
    "reason_np": {"config": {"use_prior": False, "text_head": True, "reason_layers": 2},
                  "objects": ["shape", "colour", "size"]},
    "reason4_np": {"config": {"use_prior": False, "text_head": True, "reason_layers": 2,
                              "reason_stride": 4}, "objects": ["shape", "colour", "size"]},
    "reason_plain_np": {"config": {"use_prior": False, "reason_layers": 2, "text_head": False}},
    # with the prior (and simulated grounding mistakes in training)
    "reason_prior": {"config": {"text_head": True, "reason_layers": 2, "prior_warp": 0.3},
                     "objects": ["shape", "colour", "size"], "prior_swap": 0.15},
    "words_np": {"config": {"use_prior": False, "reason_layers": 0, "text_head": False,
                            "word_buckets": 4096}},
    "words_head_np": {"config": {"use_prior": False, "reason_layers": 0, "word_buckets": 4096,
                                 "text_head": True}},
}
"""Named variants: SegmenterConfig overrides (``config``), optional object-head targets and
``prior_swap`` (the share of training priors replaced by a simulated grounding mistake)."""


def run_variant(name: str, minutes: float, step_seconds: float, every: int) -> dict[str, Any]:
    """Train one variant in this process; returns its curve."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_segmenter import load_arrays, mistake_priors, object_targets

    from l2l_env.metrics import iou
    from segmenter import Segmenter, SegmenterConfig, fit

    torch.set_num_threads(1)
    spec = VARIANTS[name]
    over = dict(spec["config"])
    objects = None
    if spec.get("objects"):
        objects, classes = object_targets(spec["objects"], None)
        over["object_classes"] = classes
    cfg = SegmenterConfig(**over)
    train, _ = load_arrays("train", cfg.image_size, "qwen2.5-vl-7b", 0, None)
    val, _ = load_arrays("val", cfg.image_size, "qwen2.5-vl-7b", 0, None)
    sub = np.random.default_rng(0).permutation(len(val.phrases))[:400]
    kinds, right = np.array(val.kinds)[sub], val.prior_right[sub]

    def score(seg: Segmenter) -> dict[str, float]:
        probs = seg.predict(val.images[sub], val.priors[sub] if cfg.use_prior else None,
                            [val.phrases[i] for i in sub], teacher=True)
        ious = iou(probs > 0.5, val.masks[sub])
        out = {"mIoU": float(ious.mean()), "prior_right": float(ious[right].mean()),
               "prior_wrong": float(ious[~right].mean())}
        out.update({str(k): float(ious[kinds == k].mean()) for k in sorted(set(kinds))})
        print(name, seg.step, {k: round(v, 3) for k, v in out.items()}, flush=True)
        return {k: round(v, 4) for k, v in out.items()}

    total = int(60 * minutes / step_seconds)
    seg = Segmenter(cfg.replace(total_steps=total))
    t0 = time.perf_counter()
    result = fit(seg, train.images, train.priors if cfg.use_prior else None, train.phrases,
                 train.masks.astype(np.float32), steps=total, minutes=minutes, batch_size=32,
                 seed=0, progress=False, eval_fn=score, eval_every=every, objects=objects,
                 alt_priors=(mistake_priors("train", cfg.image_size, 0, None)
                             if spec.get("prior_swap") else None),
                 prior_swap=float(spec.get("prior_swap", 0.0)))
    curve = [h for h in result.history if "mIoU" in h]
    return {"name": name, "variant": spec, "config": seg.config.to_dict(),
            "steps": result.steps, "train_seconds": round(time.perf_counter() - t0, 1),
            "parameters": seg.num_parameters(), "curve": curve}


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Grounding curves: SynthRef, fully supervised, val subset (400 sentences)", "",
             f"Command: `{results['command']}`  ",
             f"Machine: {results['machine']}; one thread per run, {results['jobs']} run(s) at a "
             "time, beside other jobs (steps per minute vary: compare at equal steps)", ""]
    for r in results["runs"]:
        kinds = [k for k in r["curve"][-1] if k not in ("step", "time", "mIoU", "prior_right",
                                                        "prior_wrong")]
        prior = r["config"].get("use_prior", True)  # then: by the MLLM prior's correctness
        extra = ["prior right", "prior wrong"] if prior else []
        lines += [f"## {r['name']}: {json.dumps(r['variant'])}", "",
                  "| step | mIoU | " + " | ".join(extra + kinds) + " |",
                  "|" + "---|" * (2 + len(extra) + len(kinds))]
        for h in r["curve"]:
            cells = ([h["prior_right"], h["prior_wrong"]] if prior else []) + [h[k] for k in kinds]
            lines.append(f"| {h['step']} | {h['mIoU']:.3f} | "
                         + " | ".join(f"{v:.3f}" for v in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="base_np,words_head_np",
                        help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--step-seconds", type=float, default=0.22,
                        help="expected seconds per step (sizes the learning-rate schedule)")
    parser.add_argument("--every", type=int, default=400, help="steps between evaluations")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--out", default="benchmarks/results/grounding_curves.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.child:
        print(json.dumps(run_variant(args.child, args.minutes, args.step_seconds, args.every)))
        return 0
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
    out = Path(args.out)
    runs: dict[str, Any] = {}
    pending = list(names)
    active: list[tuple[str, subprocess.Popen]] = []
    while pending or active:
        while pending and len(active) < args.jobs:
            name = pending.pop(0)
            cmd = [sys.executable, __file__, "--child", name, "--minutes", str(args.minutes),
                   "--step-seconds", str(args.step_seconds), "--every", str(args.every)]
            active.append((name, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
        time.sleep(2)
        for name, proc in list(active):
            if proc.poll() is not None:
                lines = proc.stdout.read().strip().splitlines()
                active.remove((name, proc))
                if proc.returncode == 0 and lines:
                    runs[name] = json.loads(lines[-1])
                    print("\n".join(lines[:-1]), flush=True)
                else:
                    print(f"[grounding] {name} failed (exit {proc.returncode})", file=sys.stderr)
    from bench_segmenter import machine

    info = machine()
    results = {"command": "python benchmarks/bench_grounding.py " + " ".join(argv),
               "machine": f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}",
               "jobs": args.jobs,
               "runs": [runs[n] for n in names if n in runs]}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the variants measured earlier, replace the ones run now
        earlier = json.loads(out.read_text()).get("runs", [])
        results["runs"] = [r for r in earlier if r["name"] not in runs] + results["runs"]
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
