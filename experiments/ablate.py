"""``l2l-ablate``: agents x label ratios x seeds, plus a supervised-only and a fully supervised row.

    l2l-ablate [--config FILE] [--agents all,threshold,l2l] [--ratios 0.01,0.05,0.1]
               [--seeds 0,1,2] [--jobs N] [--out DIR] [--split val] [KEY=VALUE ...]

Every run is one ``l2l-run`` with its own output directory ``OUT/runs/<agent>-<pct>pct-s<seed>``;
a run whose ``results.json`` exists is not run again and an interrupted one resumes, so the whole
ablation is resumable. With ``--jobs N`` the runs execute in N parallel processes (each with
``threads`` torch threads). The supervised-only row is the ``none`` agent (the env still trains the
segmenter on labeled data every ``update_interval`` steps, with no pseudo-labels); the fully
supervised row is ``label_ratio = 1`` (no loop; the same number of optimiser steps on every label).

Writes ``OUT/table.md`` (mIoU and oIoU, mean +- std over seeds, and the share of the gap between
supervised-only and fully supervised that each agent closes), ``OUT/table.csv`` (one row per
agent, ratio and metric) and ``OUT/plot.png`` (mIoU vs label ratio per agent).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import agents
from agents.heuristics import CellRuleAgent
from experiments import config as C
from experiments import sweep
from experiments import plugins
from experiments.run import main as run_main

SUPERVISED_ONLY = "none"
FULLY_SUPERVISED = "supervised"
DEFAULT_RATIOS = (0.01, 0.05, 0.1)
DEFAULT_SEEDS = (0, 1, 2)
TABLE_METRICS = ("mIoU", "oIoU")


def default_agents() -> list[str]:
    """Every registered heuristic agent (``none`` is the supervised-only row), ``sb3:ppo``, ``l2l``."""
    heuristics = [n for n in agents.available() if not n.endswith(">") and n != SUPERVISED_ONLY
                  and issubclass(agents.agent_class(n), CellRuleAgent)]
    return heuristics + ["sb3:ppo", "l2l"]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the ablation."""

    agent: str
    ratio: float
    seed: int

    @property
    def name(self) -> str:
        agent = self.agent.replace(":", "_")
        return f"{agent}-{C.percent(self.ratio)}pct-s{self.seed}"


def plan(agent_names: Sequence[str], ratios: Sequence[float], seeds: Sequence[int],
         supervised_only: bool = True, fully_supervised: bool = True) -> list[RunSpec]:
    """The runs of an ablation, in a stable order."""
    runs = []
    names = list(agent_names)
    if supervised_only and SUPERVISED_ONLY not in names:
        names = [SUPERVISED_ONLY] + names
    for seed in seeds:
        for ratio in ratios:
            runs += [RunSpec(a, float(ratio), int(seed)) for a in names]
        if fully_supervised:
            runs.append(RunSpec(FULLY_SUPERVISED, 1.0, int(seed)))
    return runs


def run_argv(spec: RunSpec, out: Path, config: str | None, overrides: Sequence[str], threads: int,
             imports: Sequence[str] = ()) -> list[str]:
    """``l2l-run`` arguments of one run."""
    argv = ["--out", str(out / "runs" / spec.name), "--label-ratio", repr(spec.ratio),
            "--seed", str(spec.seed), "--resume", "--no-progress"]
    for module in imports:
        argv += ["--import", module]
    if spec.agent != FULLY_SUPERVISED:
        argv += ["--agent", spec.agent]
    if config:
        argv += ["--config", config]
    return argv + list(overrides) + [f"threads={threads}"]


def execute(spec: RunSpec, out: Path, config: str | None, overrides: Sequence[str], threads: int,
            in_process: bool, wait_for: tuple[Path, threading.Event] | None = None,
            imports: Sequence[str] = ()) -> dict[str, Any]:
    """Run one cell (skipped when its results exist); returns ``{"spec", "ok", "seconds", "log"}``.

    ``wait_for = (warm-up cache file, leader finished)``: first wait until the run that warms up
    the same segmenter has written it (or ended), so the warm-up is done once.
    """
    run_dir = out / "runs" / spec.name
    t0 = time.perf_counter()
    if (run_dir / "results.json").is_file():
        return {"spec": spec, "ok": True, "seconds": 0.0, "skipped": True}
    if wait_for is not None:
        cache_file, leader_done = wait_for
        while not cache_file.is_file() and not leader_done.wait(1.0):
            pass
    argv = run_argv(spec, out, config, overrides, threads, imports)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "run.log"
    if in_process:
        buf = io.StringIO()
        with redirect_stdout(buf), redirect_stderr(buf):
            try:
                code = run_main(argv)
            except Exception as err:  # a failed run is reported in the table, not fatal
                print(f"{type(err).__name__}: {err}", file=buf)
                code = 1
        log.write_text(buf.getvalue())
    else:
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        with open(log, "w") as fh:
            code = subprocess.call([sys.executable, "-m", "experiments.run", *argv], stdout=fh,
                                   stderr=subprocess.STDOUT, env=env)
    ok = code == 0 and (run_dir / "results.json").is_file()
    return {"spec": spec, "ok": ok, "seconds": time.perf_counter() - t0, "skipped": False,
            "log": str(log)}


Waits = dict[RunSpec, tuple[Path, threading.Event]]


def schedule(runs: Sequence[RunSpec], config: str | None, overrides: Sequence[str],
             cache_dir: Path | None) -> tuple[list[RunSpec], Waits, dict[RunSpec, threading.Event]]:
    """Order runs so that one run per shared warm-up (its leader) starts first; the others wait
    for the leader's warm-up file (or its end). Returns ``(order, waits, leader events)``."""
    events: dict[RunSpec, threading.Event] = {}
    if cache_dir is None:
        return list(runs), {}, events
    leaders: dict[str, RunSpec] = {}
    waits: Waits = {}
    for spec in runs:
        flags = {"label_ratio": spec.ratio, "seed": spec.seed}
        if spec.agent != FULLY_SUPERVISED:
            flags["agent"] = spec.agent
        cfg = C.load_config(config, flags, list(overrides))
        key = C.warmup_key(cfg, C.validate(cfg, check_paths=False))
        if key not in leaders:
            leaders[key] = spec
            events[spec] = threading.Event()
        else:
            waits[spec] = (warmup_file(cache_dir, key), events[leaders[key]])
    first = list(leaders.values())
    return first + [s for s in runs if s not in events], waits, events


# ----------------------------------------------------------------------------- aggregation

def collect(out: Path, runs: Sequence[RunSpec], split: str | None) -> tuple[dict, str]:
    """``{(agent, ratio): {metric: [values over seeds]}}`` and the split used."""
    cells: dict[tuple[str, float], dict[str, list[float]]] = {}
    used = split
    for spec in runs:
        f = out / "runs" / spec.name / "results.json"
        if not f.is_file():
            continue
        res = json.loads(f.read_text())
        metrics = res.get("metrics", {})
        if not metrics:
            continue
        s = used or next(iter(metrics))
        used = s
        if s not in metrics:
            raise ValueError(f"{f}: no metrics for split {s!r} (has {sorted(metrics)})")
        cell = cells.setdefault((spec.agent, spec.ratio), {})
        for k in TABLE_METRICS:
            cell.setdefault(k, []).append(float(metrics[s][k]))
        pl = res.get("pseudo_labels") or {}
        cell.setdefault("pl_precision", []).append(float(pl.get("pl_precision") or float("nan")))
        last = (pl.get("curves") or [{}])[-1]
        for key in ("pl_iou_prior", "pl_iou_teacher", "pl_iou_label"):  # at the end of the loop
            cell.setdefault(f"{key}_end", []).append(float(last.get(key, float("nan"))))
        cell.setdefault("loop_s_per_1000", []).append(
            float((res.get("timing") or {}).get("loop_s_per_1000_samples", float("nan"))))
    return cells, used or "val"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def agent_label(agent: str) -> str:
    """The name of ``agent`` in tables and legends (oracles say they read ground truth)."""
    names = {SUPERVISED_ONLY: "supervised only (none)", FULLY_SUPERVISED: "fully supervised (100%)"}
    if agent.startswith("oracle"):
        return f"{agent} (oracle: reads ground truth, analysis only)"
    return names.get(agent, agent)


def _cell(values: Sequence[float] | None, expected: int = 0) -> str:
    """``mean ± std`` (percent) of the finite values; ``(k of n)`` when fewer than the ``expected``
    runs gave a number (a missing or NaN run is shown, not hidden); ``-`` when none did."""
    if not values:
        return "-"
    m, sd = mean_std(values)
    if not math.isfinite(m):
        return "-"
    good = sum(math.isfinite(v) for v in values)
    mark = f" ({good} of {expected})" if good < expected else ""
    return f"{100 * m:.2f} ± {100 * sd:.2f}{mark}"


def tables(cells: dict, agent_names: Sequence[str], ratios: Sequence[float], split: str,
           seeds: Sequence[int]) -> tuple[str, list[dict[str, Any]]]:
    """``(markdown, csv rows)``."""
    order = [SUPERVISED_ONLY] + [a for a in agent_names if a != SUPERVISED_ONLY]
    full = cells.get((FULLY_SUPERVISED, 1.0))
    n = len(seeds)
    md = [f"Split `{split}`, mean ± std over seeds {list(seeds)} (percent).", ""]
    for metric in TABLE_METRICS:
        head = "| agent | " + " | ".join(f"{C.percent(r)}% labels" for r in ratios) + " |"
        md += [f"### {metric}", "", head, "|---|" + "---:|" * len(ratios)]
        for a in order:
            md.append(f"| {agent_label(a)} | " + " | ".join(_cell((cells.get((a, r)) or {}).get(metric), n)
                                                      for r in ratios) + " |")
        if full:
            cells_full = " | ".join(_cell(full[metric], n) for _ in ratios)
            md.append(f"| {agent_label(FULLY_SUPERVISED)} | {cells_full} |")
        md.append("")
    if full and any((SUPERVISED_ONLY, r) in cells for r in ratios):
        md += ["### Gap closed (mIoU)", "",
               "(agent - supervised only) / (fully supervised - supervised only), from the means.", "",
               "| agent | " + " | ".join(f"{C.percent(r)}% labels" for r in ratios) + " |",
               "|---|" + "---:|" * len(ratios)]
        f_m = mean_std(full["mIoU"])[0]
        for a in order:
            if a == SUPERVISED_ONLY:
                continue
            row = []
            for r in ratios:
                base, got = cells.get((SUPERVISED_ONLY, r)), cells.get((a, r))
                if not base or not got:
                    row.append("-")
                    continue
                b_m, a_m = mean_std(base["mIoU"])[0], mean_std(got["mIoU"])[0]
                row.append(f"{100 * (a_m - b_m) / (f_m - b_m):.0f}%" if f_m != b_m else "-")
            md.append(f"| {a} | " + " | ".join(row) + " |")
        md.append("")
    rows = []
    for (agent, ratio), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for metric, values in cell.items():
            m, sd = mean_std(values)
            rows.append({"agent": agent, "label_ratio": ratio, "split": split, "metric": metric,
                         "mean": m, "std": sd, "n": sum(math.isfinite(v) for v in values),
                         "values": " ".join(f"{v:.6f}" for v in values)})
    return "\n".join(md), rows


def plot(cells: dict, agent_names: Sequence[str], ratios: Sequence[float], split: str,
         path: Path) -> None:
    """mIoU vs label ratio per agent (error bars: std over seeds); fully supervised as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = [SUPERVISED_ONLY] + [a for a in agent_names if a != SUPERVISED_ONLY]
    for agent in order:
        xs, ms, sds = [], [], []
        for r in ratios:
            cell = cells.get((agent, r))
            if cell:
                m, sd = mean_std(cell["mIoU"])
                xs.append(100 * r)
                ms.append(100 * m)
                sds.append(100 * sd)
        if xs:
            style = {"linestyle": "--", "color": "grey"} if agent == SUPERVISED_ONLY else {}
            lw = 2.5 if agent == "l2l" else 1.3
            ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=agent_label(agent), linewidth=lw,
                        **style)
    full = cells.get((FULLY_SUPERVISED, 1.0))
    if full:
        m, _ = mean_std(full["mIoU"])
        ax.axhline(100 * m, color="black", linestyle=":", label=agent_label(FULLY_SUPERVISED))
    ax.set_xscale("log")
    ax.set_xticks([100 * r for r in ratios])
    ax.set_xticklabels([f"{C.percent(r)}%" for r in ratios])
    ax.set_xlabel("labeled train images")
    ax.set_ylabel(f"mIoU on {split} (%)")
    ax.set_title("L2L ablation: mIoU vs label ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def result_splits(out: Path, runs: Sequence[RunSpec]) -> list[str]:
    """The evaluation splits of the finished runs, in the order their results list them."""
    for spec in runs:
        f = out / "runs" / spec.name / "results.json"
        if f.is_file():
            return list(json.loads(f.read_text()).get("metrics", {}))
    return []


def write_outputs(out: Path, runs: Sequence[RunSpec], agent_names: Sequence[str],
                  ratios: Sequence[float], seeds: Sequence[int], split: str | None) -> dict[str, Path]:
    """``table.md`` (the table split first, then the other splits), ``table.csv`` (every split)
    and ``plot.png`` (the table split)."""
    cells, used = collect(out, runs, split)
    md, rows = tables(cells, agent_names, ratios, used, seeds)
    for other in [s for s in result_splits(out, runs) if s != used]:
        other_cells, _ = collect(out, runs, other)
        other_md, other_rows = tables(other_cells, agent_names, ratios, other, seeds)
        md += "\n\n## " + other + "\n\n" + other_md
        rows += other_rows
    (out / "table.md").write_text(md + "\n")
    with open(out / "table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["agent", "label_ratio", "split", "metric", "mean", "std",
                                                "n", "values"])
        writer.writeheader()
        writer.writerows(rows)
    plot(cells, agent_names, ratios, used, out / "plot.png")
    return {"table.md": out / "table.md", "table.csv": out / "table.csv", "plot.png": out / "plot.png"}


# ----------------------------------------------------------------------------- CLI

def _list(text: str, kind: type) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="l2l-ablate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--config", help="TOML config of every run (shipped name or file)")
    p.add_argument("--agents", type=lambda t: _list(t, str),
                   help="comma-separated agents (default: every heuristic, sb3:ppo, l2l)")
    p.add_argument("--ratios", type=lambda t: _list(t, float),
                   help="comma-separated label ratios (default: 0.01,0.05,0.1; a sweep's: 0.01,0.05)")
    p.add_argument("--seeds", type=lambda t: _list(t, int), default=list(DEFAULT_SEEDS))
    p.add_argument("--jobs", type=int, default=1, help="parallel run processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: cores / jobs)")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--warmup-cache", dest="warmup_cache",
                   help="folder of shared warmed-up segmenters (default OUT/warmup_cache; 'none': off)")
    p.add_argument("--split", help="evaluation split of the table (default: the first)")
    p.add_argument("--no-supervised-only", dest="supervised_only", action="store_false")
    p.add_argument("--no-fully-supervised", dest="fully_supervised", action="store_false")
    p.add_argument("--in-process", action="store_true",
                   help="run sequentially in this process (no start-up cost; for small runs)")
    p.add_argument("--table-only", action="store_true", help="only aggregate existing results")
    p.add_argument("--sweep", choices=sweep.SWEEPS,
                   help="prior: one ablation per simulated grounder, weak to perfect, and a table "
                        "and plot against the grounder's Acc@0.5 (experiments/sweep.py)")
    p.add_argument("--presets", type=lambda t: _list(t, str),
                   help="the sweep's simulated grounders (default: "
                        + ",".join(sweep.PRESETS_WEAK_TO_STRONG) + ")")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="plugin module with agents/rewards, imported by every run (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``l2l-ablate``; returns 0 when every run succeeded."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    if args.sweep:
        return run_sweep(args, argv)
    args.ratios = args.ratios or list(DEFAULT_RATIOS)
    out = Path(args.out)
    try:  # validate every distinct run config before starting anything
        plugins.load(args.imports)
        agent_names = args.agents or default_agents()
        cells = [(a, r) for a in agent_names for r in args.ratios]
        if args.fully_supervised:
            cells.append(("none", 1.0))
        for agent, ratio in cells:
            flags = {"agent": agent, "label_ratio": ratio}
            C.validate(C.load_config(args.config, flags, args.overrides), check_paths=True)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        print(f"l2l-ablate: error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("l2l-ablate: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    runs = plan(agent_names, args.ratios, args.seeds, args.supervised_only, args.fully_supervised)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    cache_dir = None if args.warmup_cache == "none" else Path(args.warmup_cache or out / "warmup_cache")
    if cache_dir is not None:
        overrides.append(f"warmup_cache={json.dumps(str(cache_dir))}")
    args.overrides = overrides
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    failed: list[str] = []
    if not args.table_only:
        in_process = args.in_process or False
        print(f"l2l-ablate: {len(runs)} runs, {args.jobs} at a time, into {out}", file=sys.stderr)
        bar = tqdm(total=len(runs), desc="ablation runs")
        if in_process:
            results = []
            for spec in runs:
                results.append(execute(spec, out, args.config, args.overrides, threads, True,
                                       imports=args.imports))
                bar.update(1)
        else:
            order, waits, events = schedule(runs, args.config, args.overrides, cache_dir)
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futures = {}
                for spec in order:
                    fut = pool.submit(execute, spec, out, args.config, args.overrides, threads, False,
                                      waits.get(spec), args.imports)
                    futures[spec] = fut
                    if spec in events:
                        fut.add_done_callback(lambda _f, e=events[spec]: e.set())
                results = []
                for spec in runs:
                    results.append(futures[spec].result())
                    bar.update(1)
        bar.close()
        failed = [f"{r['spec'].name} (log: {r.get('log')})" for r in results if not r["ok"]]
        (out / "ablation.json").write_text(json.dumps({
            "agents": agent_names, "ratios": args.ratios, "seeds": args.seeds, "config": args.config,
            "overrides": args.overrides, "jobs": args.jobs, "threads": threads,
            "runs": [{"name": r["spec"].name, "ok": r["ok"], "seconds": r["seconds"],
                      "skipped": r.get("skipped", False)} for r in results]}, indent=2))
    paths = write_outputs(out, runs, agent_names, args.ratios, args.seeds, args.split)
    print((out / "table.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if failed:
        print("l2l-ablate: failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def run_sweep(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--sweep``: every grounder's ablation through :func:`main`, then the sweep's outputs."""
    drop = {"--sweep", "--presets", "--out", "--ratios", "--agents"}
    base, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in drop:
            skip = True
        elif token.split("=", 1)[0] not in drop:
            base.append(token)
    base += ["--ratios", ",".join(map(repr, args.ratios or sweep.RATIOS)),
             "--agents", ",".join(args.agents or sweep.AGENTS)]
    try:
        cfg = C.load_config(args.config, {}, list(args.overrides))
        return sweep.run(args, base, main, cfg.data_options, cfg.cache_dir)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        print(f"l2l-ablate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
