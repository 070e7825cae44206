"""Where computed artefacts (generated data, priors, text features) are cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from segmenter.shared.files import atomic_write_bytes

__all__ = ["atomic_write_bytes", "cache_dir", "config_key"]

ENV_VAR = "L2L_CACHE_DIR"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache root: ``override``, else ``$L2L_CACHE_DIR``, else ``~/.cache/l2l``."""
    if override is not None:
        root = Path(override)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        root = Path.home() / ".cache" / "l2l"
    root.mkdir(parents=True, exist_ok=True)
    return root


def config_key(config: Any, length: int = 16) -> str:
    """A stable hash of a JSON-serialisable config (dataclasses via ``asdict`` first)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
