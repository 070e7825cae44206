"""Small helpers shared by the command-line tools: one KEY=VALUE grammar for every CLI."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from typing import Any


def parse_value(text: str) -> Any:
    """A TOML literal (``1``, ``0.5``, ``true``, ``[1, 2]``, ``"s"``, ``{a = 1}``), else JSON
    (``null``, ``{"a": 1}``), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"] -> {"a": 1, "b": "x"}``, values read by :func:`parse_value`; a pair
    without ``=`` is a ValueError naming ``flag``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{flag} {pair!r} must be KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key] = parse_value(value)
    return out
