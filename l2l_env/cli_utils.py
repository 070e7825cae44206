"""Small helpers shared by the command-line tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"] -> {"a": 1, "b": "x"}``: values are JSON literals when they parse, else
    strings; a pair without ``=`` is a ValueError naming ``flag``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{flag} {pair!r} must be KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
