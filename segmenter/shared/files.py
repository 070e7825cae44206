"""Files written whole or not at all: the one atomic-write mechanism of every cache, checkpoint
and result file of the project (it lives here, in the lowest package, so that the segmenter's
own checkpoints use it too)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class DiskFull(OSError):
    """A write that failed because the disk holding ``filename`` is full."""


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of space: ``OSError`` 28, or torch's
    zip writer failing to write (it reports a full disk as an ``inline_container`` error)."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    text = str(err)
    return isinstance(err, RuntimeError) and "inline_container" in text and (
        "write" in text or "unexpected pos" in text)


def _named(err: BaseException, path: Path) -> BaseException:
    """``err`` as a :class:`DiskFull` naming ``path`` when the disk is full, else itself."""
    if disk_full(err) and not isinstance(err, DiskFull):
        return DiskFull(errno.ENOSPC, "No space left on device", str(path))
    return err


def temporary_name(path: Path) -> Path:
    """The temporary file or folder beside ``path`` that a write goes to first."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file: on a clean exit it is flushed, fsynced and renamed
    onto ``path``; on any error (a full disk, a failed rename, an interrupt) it is removed and
    ``path`` keeps its previous content; a full disk is a :class:`DiskFull` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        named = _named(err, path)
        if named is err:
            raise
        raise named from err


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_folder(path: str | os.PathLike, fill: Callable[[Path], object]) -> Path:
    """Create folder ``path`` by ``fill(temporary folder)`` and a rename; on an error the
    temporary folder is removed and ``path`` is left as it was (a full disk: :class:`DiskFull`
    naming ``path``)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        shutil.rmtree(final, ignore_errors=True)  # left by a run killed before its checkpoint
        os.replace(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _named(err, final)
        if named is err:
            raise
        raise named from err
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
