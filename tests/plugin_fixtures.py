"""A plugin module written for one test: importable by name (``--import NAME``) while the test
runs, forgotten after it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def plugin_module(folder: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                  source: str) -> Iterator[str]:
    """The module ``name`` with ``source``, written to ``folder`` and put on ``sys.path``;
    yields ``name`` and unloads the module afterwards."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield name
    finally:
        sys.modules.pop(name, None)
