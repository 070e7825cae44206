"""Cache files that know what they were built from: the one keyed-cache mechanism of every
package (warm-up, image cache, text features, SynthRef splits, priors).

A cache file ``FILE`` has a sidecar ``FILE.meta.json``: the fingerprint of the inputs it was built
from (:func:`content_key` of what was read, cheap to compute: file sizes and modification times,
annotation file hashes, the settings) and the SHA-256 of its bytes. :meth:`CacheFile.usable`
verifies both every time the file is opened, before it is used, and says in one line through
:func:`cache_warning` why a stale or corrupt file is rebuilt. It lives in the lowest package, beside
:mod:`segmenter.shared.files`, so that every layer can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from segmenter.shared.files import atomic_write_bytes

FORMAT = "l2l-cache/1"
T = TypeVar("T")


def cache_warning(message: str) -> None:
    """The one channel of cache warnings: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def content_key(value: Any, length: int = 32) -> str:
    """A stable hash of a JSON-serialisable value (what a cache was built from)."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def bytes_digest(data: bytes) -> str:
    """The SHA-256 of ``data`` (hex)."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path`` (hex), read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_stats(paths: Iterable[str | os.PathLike]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each existing file (a folder: of every file below it): a
    cheap fingerprint of files that are too large to hash."""
    out: list[list[Any]] = []
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                st = f.stat()
                out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


@dataclass(frozen=True)
class CacheFile:
    """One cache file, the fingerprint of the inputs it must have been built from, and what to
    call it in messages (``"warm-up cache"``)."""

    path: Path
    inputs: str
    what: str

    @property
    def meta_path(self) -> Path:
        """The sidecar with the inputs' fingerprint and the file's checksum."""
        return self.path.with_name(self.path.name + ".meta.json")

    def problem(self) -> str | None:
        """Why the file cannot be used (``None``: it can); call only when it exists."""
        try:
            meta = json.loads(self.meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError(f"not an {FORMAT} record")
        except (OSError, ValueError) as err:
            missing = isinstance(err, FileNotFoundError)
            reason = "is missing" if missing else f"is unreadable ({err})"
            return f"has no checksum ({self.meta_path.name} {reason})"
        if meta.get("inputs") != self.inputs:
            return "was built from other inputs (the data or settings changed)"
        try:
            if self.path.stat().st_size != meta.get("bytes") or \
                    file_digest(self.path) != meta.get("sha256"):
                return "does not match its checksum (corrupt or overwritten)"
        except OSError as err:
            return f"is unreadable ({err})"
        return None

    def usable(self) -> bool:
        """Whether the file exists and is what its inputs and checksum say; a stale or corrupt
        one is named with the reason (and the caller rebuilds it)."""
        if not self.path.is_file():
            return False
        problem = self.problem()
        if problem is not None:
            cache_warning(f"{self.what} {self.path} {problem}; rebuilding it")
            return False
        return True

    def read(self, reader: Callable[[Path], T],
             errors: tuple[type[BaseException], ...] = (ValueError,)) -> T | None:
        """``reader(path)`` of a usable file; ``None`` when the file is missing, stale or corrupt,
        or when ``reader`` raises one of ``errors`` (named through :meth:`rejected`): the caller
        then rebuilds it."""
        if not self.usable():
            return None
        try:
            return reader(self.path)
        except errors as err:
            self.rejected(err)
            return None

    def rejected(self, err: BaseException) -> None:
        """Name a verified file that its reader could still not use (the caller rebuilds it)."""
        cache_warning(f"{self.what} {self.path} is unreadable ({type(err).__name__}: {err}); "
                      "rebuilding it")

    def write(self, data: bytes) -> None:
        """Write ``data`` and its sidecar, each atomically; the sidecar goes first, so a reader
        that sees the new file sees its checksum too."""
        self._write_meta(bytes_digest(data), len(data))
        atomic_write_bytes(self.path, data)

    def seal(self) -> None:
        """Write the sidecar of a file that was written in place (streamed)."""
        self._write_meta(file_digest(self.path), self.path.stat().st_size)

    def _write_meta(self, digest: str, size: int) -> None:
        meta = {"format": FORMAT, "inputs": self.inputs, "sha256": digest, "bytes": size}
        atomic_write_bytes(self.meta_path, json.dumps(meta).encode())
