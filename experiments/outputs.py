"""What one run writes into its output folder: the one list of a run's outputs, by which the
runner names what it writes and ``l2l-run --overwrite`` removes everything of a previous run
(other files in the folder are left alone)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

RESULTS = "results.json"
CONFIG = "config.json"
SEGMENTER = "segmenter.pt"
"""The final segmenter."""
AGENT = "agent"
"""The final agent (a folder)."""
CHECKPOINTS = "ckpt"
"""The agents of the run's checkpoints (a folder)."""
TENSORBOARD = "tb"
QUALITY_PLOT = "pseudo_label_quality.png"
SAMPLES = "samples.png"


def checkpoint_name(rank: int = 0) -> str:
    """The resumable checkpoint of ``rank``."""
    return "checkpoint.pt" if rank == 0 else f"checkpoint.rank{rank}.pt"


RUN_OUTPUTS = (RESULTS, CONFIG, SEGMENTER, AGENT, CHECKPOINTS, TENSORBOARD, QUALITY_PLOT, SAMPLES,
               checkpoint_name(0))
"""Every fixed name a run writes."""
RUN_PATTERNS = ("checkpoint.rank*.pt", ".*.tmp")
"""Names a run writes that vary: other ranks' checkpoints, temporaries of writes cut short."""


def run_outputs(out: str | os.PathLike) -> list[Path]:
    """The outputs of a run that exist in ``out``."""
    out = Path(out)
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    for pattern in RUN_PATTERNS:
        found += sorted(out.glob(pattern))
    return found


def remove_outputs(out: str | os.PathLike) -> list[Path]:
    """Remove every output of a previous run from ``out``; returns what was removed."""
    removed = run_outputs(out)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return removed
