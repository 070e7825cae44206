"""``l2l-ablate --sweep prior``: how good must the MLLM be for learned label construction to pay?

One ablation per simulated grounder (``prior=simulated/<preset>``, weakest to perfect), each into
``OUT/<preset>/`` with ``l2l-ablate``'s own resumable runs, then one table and one plot across them:

* ``OUT/sweep.csv``: a row per grounder, agent, label ratio, split and metric (``mIoU``, ``oIoU``,
  ``pl_iou_label_end``, ...), with the grounder's Acc@0.5 on the train split (the priors the loop
  builds labels from) and on the split of the metric;
* ``OUT/sweep.md``: per label ratio, val mIoU and end-of-loop label IoU of every agent against the
  grounder's Acc@0.5, and where ``l2l`` beats ``prior`` (the MLLM alone) and ``all`` (naive
  self-training);
* ``OUT/sweep.png``: those two measures against Acc@0.5, a panel per label ratio.

A grounder folder may hold more seeds than others (``--presets qwen2.5-vl-7b --seeds 0,1,2``):
every table cell is the mean ± std of the seeds found, with their count.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

from experiments import ablate
from l2l_env.data import load_table
from l2l_env.data.types import RefSplit
from l2l_env.priors.report import prior_quality
from l2l_env.priors.simulated import DEFAULT_PRESET, PRESETS
from l2l_env.priors.table import load_priors

SWEEPS = ("prior",)
"""What ``--sweep`` can vary."""
PRESETS_WEAK_TO_STRONG = ("kosmos-2", "florence-2-large", "mid-75", DEFAULT_PRESET, "perfect")
AGENTS = ("prior", "all", "agreement", "l2l", "oracle-construct")
"""The sweep's agents (``none``, the supervised-only row, is always added)."""
RATIOS = (0.01, 0.05)
MAX_SEEDS = 10
"""Seeds 0..MAX_SEEDS-1 are looked for in each grounder's folder."""
PLOTTED = (("mIoU", "val mIoU (%)"), ("pl_iou_label_end", "end-of-loop label IoU (%)"))


def grounder_accuracy(preset: str, samples: dict[str, RefSplit],
                      cache_dir: str | None = None) -> dict[str, float]:
    """Acc@0.5 of the simulated ``preset`` on each split of ``samples`` (SynthRef sentences; the
    priors are cached under ``cache_dir``, None: the default cache)."""
    return {split: prior_quality(load_priors("synthref", split, split_samples, "simulated",
                                             cache_dir=cache_dir, preset=preset),
                                 split_samples)["acc@0.5"]
            for split, split_samples in samples.items()}


def synthref_sentences(splits: Sequence[str], data_options: dict[str, Any],
                       cache_dir: str | None = None) -> dict[str, RefSplit]:
    """Every sentence of SynthRef's ``splits`` (generated into ``cache_dir``)."""
    return {split: RefSplit(load_table("synthref", split, data_root=cache_dir, **data_options),
                            "per_sentence") for split in splits}


def preset_argv(argv: Sequence[str], preset: str, out: Path) -> list[str]:
    """``l2l-ablate`` arguments of one grounder's ablation."""
    return [*argv, "--out", str(out / preset), "--no-fully-supervised", f"prior=simulated/{preset}"]


def run(args: Any, argv: Sequence[str], main: Callable[[Sequence[str]], int],
        data_options: dict[str, Any], cache_dir: str | None = None) -> int:
    """Run (or resume) every grounder's ablation with ``main`` and write the sweep's outputs."""
    presets = args.presets or list(PRESETS_WEAK_TO_STRONG)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"--presets: unknown simulated preset(s) {unknown}; expected names of "
                         f"{sorted(PRESETS)}")
    out = Path(args.out)
    code = 0
    if not args.table_only:
        for preset in presets:
            code = max(code, main(preset_argv(argv, preset, out)))
    agent_names = [ablate.SUPERVISED_ONLY] + [a for a in (args.agents or AGENTS)
                                              if a != ablate.SUPERVISED_ONLY]
    ratios = args.ratios or list(RATIOS)
    rows = collect(out, presets, agent_names, ratios, data_options, cache_dir)
    write(out, rows, presets, agent_names, ratios)
    return code


def collect(out: Path, presets: Sequence[str], agent_names: Sequence[str],
            ratios: Sequence[float], data_options: dict[str, Any],
            cache_dir: str | None = None) -> list[dict[str, Any]]:
    """One row per grounder, agent, ratio, split and metric of the finished runs."""
    specs = [ablate.RunSpec(a, float(r), s) for a in agent_names for r in ratios
             for s in range(MAX_SEEDS)]
    found = {p: ablate.result_splits(out / p, specs) for p in presets}
    found = {p: splits for p, splits in found.items() if splits}
    samples = synthref_sentences(sorted({"train", *(s for v in found.values() for s in v)}),
                                 data_options, cache_dir)  # loaded once for every grounder
    rows = []
    for preset, splits in found.items():
        folder = out / preset
        acc = grounder_accuracy(preset, {s: samples[s] for s in ("train", *splits)}, cache_dir)
        for split in splits:
            cells, _ = ablate.collect(folder, specs, split)
            for (agent, ratio), cell in sorted(cells.items()):
                for metric, values in cell.items():
                    mean, std = ablate.mean_std(values)
                    rows.append({"preset": preset, "acc_train": acc["train"], "acc_split": acc[split],
                                 "agent": agent, "label_ratio": ratio, "split": split,
                                 "metric": metric, "mean": mean, "std": std,
                                 "n": sum(math.isfinite(v) for v in values),
                                 "values": " ".join(f"{v:.6f}" for v in values)})
    return rows


def write(out: Path, rows: list[dict[str, Any]], presets: Sequence[str],
          agent_names: Sequence[str], ratios: Sequence[float]) -> None:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["preset", "acc_train", "acc_split", "agent",
                                                "label_ratio", "split", "metric", "mean", "std",
                                                "n", "values"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.md").write_text(markdown(rows, presets, agent_names, ratios))
    plot(rows, presets, agent_names, ratios, out / "sweep.png")


def agents_of(metric: str, agent_names: Sequence[str]) -> list[str]:
    """The agents a metric is shown for (``none`` builds no label, so has no label IoU)."""
    if metric.startswith("pl_"):
        return [a for a in agent_names if a != ablate.SUPERVISED_ONLY]
    return list(agent_names)


def _index(rows: list[dict[str, Any]], split: str) -> dict[tuple[str, str, float, str], dict]:
    return {(r["preset"], r["agent"], r["label_ratio"], r["metric"]): r for r in rows
            if r["split"] == split}


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or not math.isfinite(row["mean"]):
        return "-"
    spread = f" ± {100 * row['std']:.1f} (n={row['n']})" if row["n"] > 1 else ""
    return f"{100 * row['mean']:.1f}{spread}"


def markdown(rows: list[dict[str, Any]], presets: Sequence[str], agent_names: Sequence[str],
             ratios: Sequence[float], split: str = "val") -> str:
    """Per ratio and plotted metric, a grounder x agent table, and where ``l2l`` wins."""
    cells = _index(rows, split)
    acc = {r["preset"]: r["acc_train"] for r in rows}
    found = [p for p in presets if p in acc]
    lines = [f"Split `{split}`; one seed per point unless `n` says more (mean ± std). "
             "Acc@0.5: the grounder's box accuracy on the train split. `oracle-construct` reads "
             "ground truth (analysis only).", ""]
    for ratio in ratios:
        for metric, title in PLOTTED:
            shown = agents_of(metric, agent_names)
            lines += [f"### {title}, {100 * ratio:g}% labels", "",
                      "| grounder | Acc@0.5 | " + " | ".join(shown) + " |",
                      "|---|---:|" + "---:|" * len(shown)]
            for p in found:
                lines.append(f"| {p} | {100 * acc[p]:.1f} | " + " | ".join(
                    _cell(cells.get((p, a, ratio, metric))) for a in shown) + " |")
            lines.append("")
        lines += [f"### Where `l2l` pays, {100 * ratio:g}% labels (val mIoU)", "",
                  "| grounder | Acc@0.5 | l2l - prior | l2l - all |", "|---|---:|---:|---:|"]
        for p in found:
            mine = cells.get((p, "l2l", ratio, "mIoU"))
            diffs = []
            for rival in ("prior", "all"):
                theirs = cells.get((p, rival, ratio, "mIoU"))
                diffs.append("-" if mine is None or theirs is None
                             else f"{100 * (mine['mean'] - theirs['mean']):+.1f}")
            lines.append(f"| {p} | {100 * acc[p]:.1f} | {diffs[0]} | {diffs[1]} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], presets: Sequence[str], agent_names: Sequence[str],
         ratios: Sequence[float], path: Path, split: str = "val") -> None:
    """Val mIoU and end-of-loop label IoU against the grounder's Acc@0.5, a column per ratio."""
    matplotlib.use("Agg")
    cells = _index(rows, split)
    acc = {r["preset"]: r["acc_train"] for r in rows}
    found = sorted((p for p in presets if p in acc), key=acc.get)
    colour = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(agent_names)}
    fig, axes = plt.subplots(len(PLOTTED), len(ratios), figsize=(5.5 * len(ratios), 8.5),
                             squeeze=False)
    for col, ratio in enumerate(ratios):
        for row_i, (metric, title) in enumerate(PLOTTED):
            ax = axes[row_i][col]
            for agent in agents_of(metric, agent_names):
                pts = [(100 * acc[p], cells[(p, agent, ratio, metric)]) for p in found
                       if (p, agent, ratio, metric) in cells]
                pts = [(x, r) for x, r in pts if math.isfinite(r["mean"])]
                if not pts:
                    continue
                style = {"linestyle": ":"} if agent.startswith("oracle") else {}
                ax.errorbar([x for x, _ in pts], [100 * r["mean"] for _, r in pts],
                            yerr=[100 * r["std"] for _, r in pts], marker="o", capsize=3,
                            linewidth=2.5 if agent == "l2l" else 1.2, color=colour[agent],
                            label=ablate.agent_label(agent), **style)
            ax.set_title(f"{title}, {100 * ratio:g}% labels")
            ax.set_xlabel("grounder Acc@0.5 on train (%)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("How good must the MLLM be? SynthRef, simulated grounders")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
