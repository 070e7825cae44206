"""The header of the project's packed cache files (image cache, text feature store).

A packed file starts with ``HEAD``: an 8-byte magic, a count and a width (int64, little endian),
then a table whose length depends on the count, then fixed-size rows. :func:`read_header` reads
and checks that start once for every kind of packed file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

HEAD = struct.Struct("<8sqq")
"""magic (8 bytes), count, width."""


def read_header(path: str | os.PathLike, magic: bytes, table_bytes: Callable[[int], int],
                what: str) -> tuple[int, int, bytes, int]:
    """``(count, width, table, file length)`` of the packed file at ``path``; ``table_bytes(count)``
    is the length of the table after the header. Raises ``ValueError`` naming ``what`` and the
    file (and how to recover) when it cannot be read or its header is not ``magic``'s."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD.size)
            found, count, width = HEAD.unpack(head) if len(head) == HEAD.size else (b"", 0, 0)
            if found != magic or count < 0 or width <= 0:
                raise ValueError("bad header")
            table = fh.read(table_bytes(count))
            fh.seek(0, os.SEEK_END)
            length = fh.tell()
    except (OSError, ValueError, struct.error) as err:
        raise ValueError(f"{what} {path} is unreadable ({err}); delete it to rebuild it") from None
    return int(count), int(width), table, int(length)
