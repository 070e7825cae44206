"""How good are the priors of a split: box Acc@0.5 and the mIoU of the soft proposal.

* ``acc@0.5``: the fraction of sentences whose grounded box has IoU >= 0.5 with the referent's
  box (no prior counts as a miss);
* ``proposal_mIoU``: the mean IoU between the referent's mask and the soft proposal (rendered at
  the image's size) thresholded at 0.5 (``> 0.5``, so a flat no-prior map selects nothing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from l2l_env.data.types import RefSplit
from l2l_env.metrics import iou
from l2l_env.priors.base import box_iou_array
from l2l_env.priors.table import PriorTable

REPORT_KEYS: tuple[str, ...] = ("acc@0.5", "proposal_mIoU")


def prior_quality(priors: PriorTable, samples: RefSplit, kind: str = "box", chunk: int = 256,
                  **params: Any) -> dict[str, float]:
    """``{"acc@0.5": ..., "proposal_mIoU": ..., "no_prior": ..., "count": ...}`` over every
    sentence of ``samples.table`` (fractions in [0, 1])."""
    split = RefSplit(samples.table, "per_sentence")
    n = len(split)
    if n == 0:
        raise ValueError(f"split {samples.table.split!r} of {samples.table.name} has no sentences")
    records = [split.record(k) for k in range(n)]
    ids = [f"{ref.ref_id}:{ref.sentences[pos][0]}" for ref, pos in records]
    rows = priors.rows(ids)
    true_boxes = np.array([ref.box for ref, _ in records], dtype=np.float64)
    acc = float(np.mean(box_iou_array(priors.boxes[rows], true_boxes) >= 0.5))
    ious = np.zeros(n, dtype=np.float64)
    for start in range(0, n, chunk):
        positions = range(start, min(start + chunk, n))
        masks: dict[int, np.ndarray] = {}
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for k in positions:
            ref = records[k][0]
            if ref.ref_id not in masks:
                masks[ref.ref_id] = ref.load_mask()
            by_shape[masks[ref.ref_id].shape].append(k)
        for (h, w), ks in by_shape.items():
            maps = priors.proposals([ids[k] for k in ks], h, w, kind, **params)
            gts = np.stack([masks[records[k][0].ref_id] for k in ks])
            ious[ks] = iou(maps > 0.5, gts)
    return {"acc@0.5": acc, "proposal_mIoU": float(ious.mean()),
            "no_prior": float(priors.no_prior(ids).mean()), "count": n}


def format_report(rows: dict[str, dict[str, float]], title: str = "") -> str:
    """A plain-text table, one line per split, values in percent."""
    lines = [title] if title else []
    lines.append(f"{'split':<8} {'count':>6} {'acc@0.5':>8} {'prop.mIoU':>9} {'no prior':>8}")
    for split, r in rows.items():
        lines.append(f"{split:<8} {int(r.get('count', 0)):>6} {100 * r['acc@0.5']:>8.2f} "
                     f"{100 * r['proposal_mIoU']:>9.2f} {100 * r.get('no_prior', 0.0):>8.2f}")
    return "\n".join(lines)


def json_report(rows: dict[str, dict[str, float]], keys: Sequence[str] = REPORT_KEYS) -> dict:
    """The ``--json`` form: ``{split: {"acc@0.5": f, "proposal_mIoU": f}}``."""
    return {split: {k: float(r[k]) for k in keys} for split, r in rows.items()}
