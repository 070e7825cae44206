"""Results of a run: the metric keys, the printed table, and atomic JSON files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from l2l_env.data.cache import atomic_write_bytes

METRIC_KEYS = ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9")
"""The metrics every evaluation split reports (the published SS-RES set)."""


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file and a rename."""
    atomic_write_bytes(Path(path), (json.dumps(data, indent=2, sort_keys=False, default=_jsonable)
                                    + "\n").encode())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def fmt(value: Any, digits: int = 2, scale: float = 100.0) -> str:
    """A metric in percent with ``digits`` decimals, or ``-`` when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per split, the :data:`METRIC_KEYS` as columns (in percent)."""
    head = "| split | " + " | ".join(METRIC_KEYS) + " |"
    rule = "|---|" + "---:|" * len(METRIC_KEYS)
    rows = [f"| {split} | " + " | ".join(fmt(m.get(k)) for k in METRIC_KEYS) + " |"
            for split, m in metrics.items()]
    return "\n".join([head, rule, *rows])


def summary_text(results: dict[str, Any]) -> str:
    """The table and one line each for the pseudo-labels and the timing, as printed at the end."""
    cfg = results.get("config", {})
    lines = [f"L2L run: {cfg.get('dataset')} | {fmt(cfg.get('label_ratio'), 0)}% labels | "
             f"agent {cfg.get('agent') if cfg.get('label_ratio', 0) < 1 else '(fully supervised)'} | "
             f"seed {cfg.get('seed')}  ->  {cfg.get('out')}", "",
             metrics_table(results.get("metrics", {}))]
    pl = results.get("pseudo_labels") or {}
    if pl.get("steps"):
        def pct(key: str) -> str:
            return fmt(pl.get(key), 1)

        lines += ["", f"pseudo-labels: {pl['steps']} unlabeled samples, coverage {pct('coverage')}%, "
                      f"precision {pct('pl_precision')}% (pixels {pct('pl_pixel_precision')}%), "
                      f"fg precision {pct('pl_fg_precision')}%, fg recall {pct('pl_recall')}%, "
                      f"mean reward {pl.get('mean_reward') or 0.0:.4f}"]
    timing = results.get("timing") or {}
    if timing:
        parts = [f"{k} {v:.0f}s" for k, v in timing.items()
                 if k.endswith("_s") and isinstance(v, (int, float))]
        lines += ["", "time: " + ", ".join(parts)]
    return "\n".join(lines)
