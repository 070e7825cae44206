"""Speed of the pseudo-label environment: env steps per second excluding segmenter work, and the
share of the full self-evolving loop's wall time that is environment overhead.

    python benchmarks/bench_env_speed.py [--steps 512] [--out benchmarks/results/env_speed]

Segmenter work (batched predictions and training steps) is timed by wrapping the segmenter's
``predict``/``train_step``/``text_features``; everything else inside ``env.step`` is env overhead.
Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import l2l_env


class Stopwatch:
    """Accumulates the wall time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0  # wrapped callables may call each other: count only the outermost

    def wrap(self, fn):
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - start
        return timed


def measure(steps: int, grid: int, seed: int) -> dict:
    env = gym.make(l2l_env.ENV_ID, grid_size=grid, episode_steps=steps + 1)
    seg = env.unwrapped.segmenter
    watch = Stopwatch()
    for name in ("predict", "train_step", "text_features"):
        setattr(seg, name, watch.wrap(getattr(seg, name)))
    env.reset(seed=seed)
    watch.seconds = 0.0  # count only segmenter work inside the timed steps
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 2, (steps, grid * grid), dtype=np.int8)
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    total = time.perf_counter() - start
    overhead = total - watch.seconds
    return {"steps": steps, "grid": grid, "total_s": total, "segmenter_s": watch.seconds,
            "env_overhead_s": overhead, "env_steps_per_s_excluding_segmenter": steps / overhead,
            "env_overhead_share": overhead / total, "loop_steps_per_s": steps / total,
            "update_interval": env.unwrapped.config.update_interval}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/env_speed"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    result = measure(args.steps, args.grid, args.seed)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}"
    result["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = ["# Environment speed", "",
          f"Command: `{result['command']}`  ",
          f"Machine: {result['machine']}", "",
          "| metric | value |", "|---|---|",
          f"| env steps/s excluding segmenter work (target >= 500) | {result['env_steps_per_s_excluding_segmenter']:.0f} |",
          f"| full loop steps/s (incl. batched predictions and updates) | {result['loop_steps_per_s']:.1f} |",
          f"| env overhead share of loop wall time | {100 * result['env_overhead_share']:.1f}% |",
          f"| steps, grid, update interval | {result['steps']}, {result['grid']}x{result['grid']}, {result['update_interval']} |",
          f"| peak RSS | {result['peak_rss_mb']:.0f} MB |", ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
