"""One run per output folder: an exclusive lock on ``OUT/.lock`` for the run's whole life.

The lock is an ``flock`` on the open file, so the operating system drops it whenever the process
ends, however it ends (a SIGKILL included): a later run never finds a stale lock. The file keeps
the holder's pid for the error message of a second run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = ".lock"


class OutputBusy(RuntimeError):
    """Another live run holds the output folder."""


class OutputLock:
    """``with OutputLock(out):`` holds ``out`` for this process; also checks, before any work,
    that ``out`` is (or can be made) a writable folder."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.file: IO[str] | None = None

    def acquire(self) -> OutputLock:
        """Take the lock; raises :class:`OutputBusy` (another run holds it) or ``OSError`` naming
        the folder when it is a file or cannot be written."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"--out {out} is a file; expected a folder for the run")
        try:
            out.mkdir(parents=True, exist_ok=True)
            fh = open(out / LOCK_NAME, "a+")
        except OSError as err:
            raise OSError(f"--out {out} cannot be written ({err.strerror or err}); choose a "
                          "writable folder") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise OutputBusy(f"{out} is in use by another l2l-run (pid {holder}); wait for it to "
                             "end or choose another --out") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError as err:
            fh.close()
            raise OSError(f"--out {out} cannot be written ({err.strerror or err}); free space or "
                          "choose another folder") from None
        self.file = fh
        return self

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
