"""The SynthRef ablation of benchmarks/RESULTS.md: ``l2l-ablate`` with the reduced-budget config
``experiments/configs/synthref_ablation.toml`` (stated there: 300 warm-up steps, 1,024 loop
steps, 500 eval sentences per split), the agents of :data:`AGENTS` (every heuristic in its
construction form, ``l2l`` and the two analysis-only oracles), plus the supervised-only and fully
supervised rows.

    python benchmarks/run_ablation.py [--ratios 0.01,0.05,0.1] [--seeds 0,1,2] [--jobs 1]
        [--agents ...] [--out benchmarks/results/ablation] [KEY=VALUE ...]

Resumable: run it again and finished runs are skipped. The runs (results.json, checkpoints,
TensorBoard logs) go to ``<out>`` (default ``runs/ablation-synthref``, ignored by git); the table,
CSV, plot and run list are copied to ``benchmarks/results/ablation/`` for committing, with the
quality curves and pictures of ``--keep-run`` (default ``l2l-5pct-s0``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from experiments import ablate

AGENTS = "all,prior,threshold,agreement,fusion,l2l,oracle-select,oracle-construct"
"""The default agents (``none``, the supervised-only row, is always added)."""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--ratios", default="0.01,0.05,0.1")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--agents", default=AGENTS, help=f"default: {AGENTS}")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="runs/ablation-synthref")
    p.add_argument("--table-only", action="store_true", help="only aggregate the finished runs")
    p.add_argument("--keep-run", default="l2l-5pct-s0",
                   help="run whose quality curves and pictures are copied next to the table")
    args = p.parse_intermixed_args()
    argv = ["--config", "synthref_ablation", "--ratios", args.ratios, "--seeds", args.seeds,
            "--jobs", str(args.jobs), "--out", args.out]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.agents:
        argv += ["--agents", args.agents]
    if args.table_only:
        argv.append("--table-only")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    code = ablate.main(argv + args.overrides)
    keep = Path(__file__).resolve().parent / "results" / "ablation"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("table.md", "table.csv", "plot.png", "ablation.json"):
        src = Path(args.out) / name
        if src.is_file():
            shutil.copyfile(src, keep / name)
    run = Path(args.out) / "runs" / args.keep_run
    if (run / "results.json").is_file():  # the curves and pictures of one run, for the README
        curves = json.loads((run / "results.json").read_text())["pseudo_labels"]["curves"]
        (keep / f"{args.keep_run}_curves.json").write_text(json.dumps(curves, indent=1))
        for picture in ("pseudo_label_quality.png", "samples.png"):
            if (run / picture).is_file():
                shutil.copyfile(run / picture, keep / f"{args.keep_run}_{picture}")
    return code


if __name__ == "__main__":
    sys.exit(main())
