"""The prior-quality sweep of benchmarks/RESULTS.md: ``l2l-ablate --sweep prior`` with the
reduced-budget config ``experiments/configs/synthref_sweep.toml`` (300 warm-up steps, 512 loop
steps, 500 eval sentences per split), the agents ``none``, ``prior``, ``all``, ``agreement``,
``l2l`` and ``oracle-construct``, at 1% and 5% labels, for the simulated grounders kosmos-2,
florence-2-large, mid-75, qwen2.5-vl-7b and perfect (seed 0), then seeds 1 and 2 at
qwen2.5-vl-7b and 5% labels for the spread of every point once.

    python benchmarks/run_sweep.py [--jobs 2] [--threads 1] [--out runs/sweep] [--no-spread]

Resumable: finished runs are skipped. The table, CSV and plot are copied to
``benchmarks/results/sweep/`` for committing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from experiments import ablate

SPREAD_PRESET = "qwen2.5-vl-7b"
SPREAD_SEEDS = "0,1,2"
SPREAD_RATIOS = "0.05"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--no-spread", dest="spread", action="store_false",
                   help=f"skip seeds {SPREAD_SEEDS} at {SPREAD_PRESET}, {SPREAD_RATIOS} labels")
    p.add_argument("--table-only", action="store_true", help="only aggregate the finished runs")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    base = ["--sweep", "prior", "--config", "synthref_sweep", "--jobs", str(args.jobs),
            "--threads", str(args.threads), "--out", args.out]
    if args.table_only:
        base.append("--table-only")
    code = ablate.main(base + ["--seeds", "0"])
    if args.spread and not args.table_only:
        code = max(code, ablate.main(base + ["--seeds", SPREAD_SEEDS, "--presets", SPREAD_PRESET,
                                             "--ratios", SPREAD_RATIOS]))
        code = max(code, ablate.main(base + ["--seeds", "0", "--table-only"]))  # all grounders
    keep = Path(__file__).resolve().parent / "results" / "sweep"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("sweep.md", "sweep.csv", "sweep.png"):
        if (Path(args.out) / name).is_file():
            shutil.copyfile(Path(args.out) / name, keep / name)
    return code


if __name__ == "__main__":
    sys.exit(main())
