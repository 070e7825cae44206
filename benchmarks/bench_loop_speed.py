"""What does learning to label cost? Wall time of the self-evolving loop per 1,000 unlabeled
samples for ``l2l`` vs ``threshold`` (a heuristic that only acts), and peak memory.

Each measurement is one real ``l2l-run`` in its own process (clean peak memory), with the default
run's settings (SynthRef, 5% labels, the default segmenter, env and ``l2l`` hyper-parameters) but a
short warm-up and no evaluation in the loop, so the time is the loop's: env steps, batched
predictions, segmenter updates, checkpoints, and for ``l2l`` its per-step policy forward and PPO
updates. Agents alternate (threshold, l2l, threshold, l2l, ...) so that load on a shared machine
hits both alike; the table gives the median over repeats.

    python benchmarks/bench_loop_speed.py [--loop-steps 1024] [--repeats 2] [--threads 2]
        [--out benchmarks/results/loop_speed] [KEY=VALUE ...]

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(agent: str, args: argparse.Namespace, workdir: Path, index: int) -> dict:
    out = workdir / f"{agent.replace(':', '_')}-{index}"
    cmd = [sys.executable, "-m", "experiments.run", "--agent", agent, "--out", str(out), "--no-progress",
           f"threads={args.threads}", f"warmup_steps={args.warmup_steps}", f"loop_steps={args.loop_steps}",
           "eval_every=0", "log_images=0", "eval_splits=[\"val\"]", *args.overrides]
    if args.config:
        cmd += ["--config", args.config]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    t = res["timing"]
    return {"agent": agent, "loop_s": t["loop_s"], "samples": res["pseudo_labels"]["steps"],
            "loop_s_per_1000": t["loop_s_per_1000_samples"], "peak_rss_mb": t["peak_rss_mb"],
            "process_s": time.perf_counter() - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="l2l-run overrides for both agents")
    p.add_argument("--config", help="l2l-run config (default: the built-in default run)")
    p.add_argument("--agents", default="threshold,l2l")
    p.add_argument("--loop-steps", type=int, default=1024)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/loop_speed")
    args = p.parse_intermixed_args()
    agents = args.agents.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="l2l-speed-") as tmp:
        for rep in range(args.repeats):
            for agent in agents:
                r = one_run(agent, args, Path(tmp), rep)
                print(f"{agent:>10}: {r['loop_s_per_1000']:.1f} s / 1000 samples, peak {r['peak_rss_mb']:.0f} MB",
                      file=sys.stderr)
                rows.append(r)
    summary = {}
    for agent in agents:
        mine = [r for r in rows if r["agent"] == agent]
        summary[agent] = {"loop_s_per_1000": statistics.median(r["loop_s_per_1000"] for r in mine),
                          "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                          "runs": [round(r["loop_s_per_1000"], 2) for r in mine]}
    base = summary.get("threshold", {}).get("loop_s_per_1000")
    lines = [
        f"Command: `python benchmarks/bench_loop_speed.py --loop-steps {args.loop_steps} --repeats "
        f"{args.repeats} --threads {args.threads}{' ' + ' '.join(args.overrides) if args.overrides else ''}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"Python {platform.python_version()}; {args.loop_steps} loop steps per run, median of {args.repeats}.",
        "", "| agent | loop s / 1000 samples | x threshold | peak RSS (MB) | per run (s / 1000) |",
        "|---|---:|---:|---:|---|"]
    for agent, s in summary.items():
        ratio = f"{s['loop_s_per_1000'] / base:.2f}x" if base else "-"
        lines.append(f"| {agent} | {s['loop_s_per_1000']:.1f} | {ratio} | {s['peak_rss_mb']:.0f} | "
                     f"{', '.join(map(str, s['runs']))} |")
    md = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text(md + "\n")
    Path(f"{args.out}.json").write_text(json.dumps({"args": vars(args), "runs": rows, "summary": summary},
                                                   indent=2))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
