"""Run checkpoints, written atomically so a run killed at any point (even by SIGKILL) resumes from
its last complete one.

A checkpoint is one ``torch.save`` file (``OUT/checkpoint.pt``; ``checkpoint.rank<r>.pt`` for
other ranks of a distributed run) written to a temporary file, flushed, fsynced and renamed over
the previous one. The agent is saved beside it into a fresh directory ``OUT/ckpt/agent-<n>``
(also via a temporary directory and a rename) *before* the checkpoint that names it, and older
agent directories are removed only after, so the checkpoint on disk always names a complete agent.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.outputs import CHECKPOINTS, checkpoint_name
from segmenter.shared.files import atomic_file, atomic_folder

FORMAT = "l2l-run-checkpoint/1"


def checkpoint_path(out: str | os.PathLike, rank: int = 0) -> Path:
    return Path(out) / checkpoint_name(rank)


def agent_root(out: str | os.PathLike, rank: int = 0) -> Path:
    return Path(out) / CHECKPOINTS / ("agent" if rank == 0 else f"rank{rank}")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_file(path) as fh:
        torch.save({"format": FORMAT, **state}, fh)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path``; a clear error when it is missing, corrupt or of another format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"checkpoint {path} is corrupt ({type(err).__name__}: {err}); remove it to "
                         f"start the run again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not an l2l-run checkpoint (expected format {FORMAT})")
    return state


def save_agent_dir(agent: Any, path: str | os.PathLike) -> str:
    """``agent.save`` into directory ``path`` through a temporary directory and a rename."""
    return str(atomic_folder(path, agent.save))


def save_agent(agent: Any, root: str | os.PathLike, tag: int) -> str:
    """``agent.save`` into ``root/agent-<tag>`` (see :func:`save_agent_dir`); returns the path."""
    return save_agent_dir(agent, Path(root) / f"agent-{tag}")


def prune_agents(root: str | os.PathLike, keep: str | None) -> None:
    """Remove agent directories under ``root`` other than ``keep`` (and stale temporary ones)."""
    root = Path(root)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and (keep is None or child.resolve() != Path(keep).resolve()):
            shutil.rmtree(child, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """The process-global RNG states (torch, numpy, random): libraries such as SB3 draw from them."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
