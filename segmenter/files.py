"""Files written whole or not at all: the one atomic-write mechanism of every cache, checkpoint
and result file of the project (it lives here, in the lowest package, so that the segmenter's
own checkpoints use it too)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def temporary_name(path: Path) -> Path:
    """The temporary file or folder beside ``path`` that a write goes to first."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file: on a clean exit it is flushed, fsynced and renamed
    onto ``path``; on any error (a full disk, a failed rename, an interrupt) it is removed and
    ``path`` keeps its previous content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_folder(path: str | os.PathLike, fill: Callable[[Path], object]) -> Path:
    """Create folder ``path`` by ``fill(temporary folder)`` and a rename; on an error the
    temporary folder is removed and ``path`` is left as it was."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        shutil.rmtree(final, ignore_errors=True)  # left by a run killed before its checkpoint
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders (``.<name>.<pid>.tmp``) in ``folder`` that were
    left by processes that are no longer running; returns what was removed. A live writer's
    temporary file is left alone."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for item in root.glob(".*.tmp"):
        try:
            pid = int(item.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        removed.append(item)
    return removed
