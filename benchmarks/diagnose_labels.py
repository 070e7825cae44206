"""Why does the constructed label fall below the teacher? Label-construction headroom at the end
of a finished run (analysis only: every number here reads the unlabeled pool's ground truth).

    python benchmarks/diagnose_labels.py RUN_DIR [RUN_DIR ...] [--samples 600] [--out FILE.json]

For each run folder (an ``l2l-run`` output with ``segmenter.pt`` and ``config.json``) the final
segmenter predicts the first ``--samples`` unlabeled loop samples (the loop's own data, priors and
grid) and the script reports, as mean per-sample IoU with the ground truth (ignored pixels count
as not foreground, as in the run's ``pl_iou_*`` curves):

* the sources a constructor can copy: ``prior`` (the soft proposal > 0.5), ``teacher`` and
  ``student`` (with the prior), ``teacher_text`` (the teacher given no prior: it reads only the
  phrase), and per-pixel unions / intersections;
* cell oracles on the run's action grid: ``oracle_construct`` (the agent of that name, acting on
  the maps the env observes: the teacher where its cell is right, else the prior where that is
  right, else ignore);
  ``oracle_sources`` (per cell the source whose pixels match the truth best, among teacher,
  teacher_text, prior, all-foreground, all-background: the best a per-cell choice of per-pixel
  sources can do); ``oracle_sample`` (per sample the best whole source);
* ``reward_optimum``: the label that maximises the ``heldout`` reward's cell scores
  (:func:`l2l_env.labels.choice_scores`, default weights) given the truth, i.e. what a perfect
  learner of the current reward would build; and the same scores with ``fg_weight = 1``,
  ``wrong_cost = 1`` (an accuracy reward);
* by whether the prior is right (box IoU >= 0.5 proxy: the proposal's IoU with the mask >= 0.3)
  or wrong, since the teacher copies a wrong prior.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import agents
from l2l_env import labels as L
from l2l_env.config import make_config
from l2l_env.loop_data import load_loop_data
from l2l_env.rows import pool_to_grid
from segmenter import Segmenter


def iou(a: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-sample IoU of ``(N, S, S)`` boolean masks (1 where both are empty)."""
    inter = (a & gt).sum(axis=(1, 2))
    union = (a | gt).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def cells(x: np.ndarray, grid: int) -> np.ndarray:
    """``(N, S, S)`` -> ``(N, G, G)`` cell means."""
    return L.cell_fraction(x.astype(np.float32), grid)


def cell_oracle(sources: dict[str, np.ndarray], gt: np.ndarray, grid: int) -> np.ndarray:
    """Per cell, the pixels of the source with the most right pixels in that cell."""
    names = list(sources)
    right = np.stack([cells(sources[n] == gt, grid) for n in names])  # (K, N, G, G)
    best = right.argmax(0)
    scale = gt.shape[-1] // grid
    pick = L.upsample_cells(best, scale)
    out = np.zeros_like(gt)
    for k, n in enumerate(names):
        out |= (pick == k) & sources[n]
    return out


def constructed_fg(codes: np.ndarray, teacher_p: np.ndarray) -> np.ndarray:
    """The foreground of the labels that ``(N, G, G)`` choice codes build (ignored pixels are not
    foreground), as the env's :func:`l2l_env.labels.construct` builds them."""
    out = np.zeros(teacher_p.shape, bool)
    for i in range(len(codes)):
        lab = L.construct(codes[i].astype(np.int8), teacher_p[i].astype(np.float32))
        out[i] = (lab.label > 0.5) & (lab.weight > 0.5)
    return out


def reward_optimum(teacher_p: np.ndarray, gt: np.ndarray, grid: int,
                   **weights: float) -> np.ndarray:
    """The foreground of the label that maximises :func:`l2l_env.labels.choice_scores`."""
    codes = np.stack([L.choice_scores(t.astype(np.float32), g, grid, **weights).argmax(1)
                      for t, g in zip(teacher_p, gt)]).reshape(len(gt), grid, grid)
    return constructed_fg(codes, teacher_p)


def diagnose(run: Path, samples: int) -> dict[str, Any]:
    cfg = json.loads((run / "config.json").read_text())
    env_cfg = make_config(cfg["resolved"]["env"])
    seg = Segmenter.load(run / "segmenter.pt")
    data = load_loop_data(env_cfg, seg.config.image_size)
    bank, grid = data.unlabeled, env_cfg.grid_size
    rows = np.arange(min(samples, len(bank)))
    images, priors = bank.images[rows], bank.priors[rows]
    phrases = [bank.phrases[r] for r in rows]
    gt = np.stack([data.vault.mask(int(r)) for r in rows]).astype(bool)
    teacher_p = seg.predict(images, priors, phrases, teacher=True)
    teacher = teacher_p > 0.5
    student = seg.predict(images, priors, phrases) > 0.5
    text = seg.predict(images, None, phrases, teacher=True) > 0.5
    prior = priors > 0.5
    ones, zeros = np.ones_like(gt), np.zeros_like(gt)
    prior_right = iou(prior, gt) >= 0.3
    maps = {"prior": bank.prior_grid[rows], "teacher": pool_to_grid(teacher_p, grid),
            "truth": cells(gt, grid), "no_prior": bank.no_prior[rows].astype(np.float32)[:, None]}
    oracle_construct = constructed_fg(agents.make("oracle-construct").rule(maps), teacher_p)
    srcs = {"teacher": teacher, "teacher_text": text, "prior": prior}
    candidates = {
        "prior": prior, "teacher": teacher, "student": student, "teacher_text": text,
        "teacher_or_text": teacher | text, "teacher_and_prior": teacher & prior,
        "oracle_construct": oracle_construct,
        "teacher_at_0.3": teacher_p > 0.3, "teacher_at_0.7": teacher_p > 0.7,
        "oracle_sources": cell_oracle(srcs, gt, grid),
        "oracle_sources_no_text": cell_oracle({k: v for k, v in srcs.items()
                                               if k != "teacher_text"}, gt, grid),
        "oracle_cells_fg_bg_teacher": cell_oracle({**srcs, "fg": ones, "bg": zeros}, gt, grid),
        "reward_optimum": reward_optimum(teacher_p, gt, grid),
        "reward_optimum_accuracy": reward_optimum(teacher_p, gt, grid, fg_weight=1.0,
                                                  wrong_cost=1.0),
    }
    per = {k: iou(v, gt) for k, v in candidates.items()}
    whole = np.stack([per[k] for k in ("prior", "teacher", "teacher_text")])
    per["oracle_sample"] = whole.max(0)
    out: dict[str, Any] = {"run": str(run), "samples": int(len(rows)), "grid": grid,
                           "labeled_objects": int(data.labeled.num_refs),
                           "probe_objects": int(data.probe.num_refs),
                           "probe_samples": int(len(data.probe)),
                           "image_size": int(gt.shape[-1]),
                           "prior_right_share": float(prior_right.mean())}
    for name, values in per.items():
        out[name] = {"all": float(values.mean()),
                     "prior_right": float(values[prior_right].mean()) if prior_right.any() else None,
                     "prior_wrong": float(values[~prior_right].mean()) if (~prior_right).any()
                     else None}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    results = []
    for run in args.runs:
        if not (run / "segmenter.pt").is_file() or not (run / "config.json").is_file():
            print(f"{run}: no segmenter.pt / config.json (not a finished l2l-run folder)",
                  file=sys.stderr)
            return 2
        res = diagnose(run, args.samples)
        results.append(res)
        print(f"\n{run} ({res['samples']} unlabeled samples, grid {res['grid']}, "
              f"{res['image_size']} px, prior right {100 * res['prior_right_share']:.0f}%)")
        print(f"{'label':<26}{'all':>8}{'prior right':>13}{'prior wrong':>13}")
        for name, v in res.items():
            if isinstance(v, dict):
                cells_ = [v["all"], v["prior_right"], v["prior_wrong"]]
                print(f"{name:<26}" + "".join(f"{100 * x:>13.1f}" if x is not None else f"{'-':>13}"
                                              for x in cells_))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
