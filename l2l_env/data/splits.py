"""Semi-supervised splits: a label ratio divides the train *images* into labeled and unlabeled.

The labeled image ids are written to (and read back from) ``{dataset}_{percent}%_image.json``, a
JSON list of image ids, the format in which published SS-RES splits are shared, so a published
split can be dropped into ``split_dir`` and reused. The same logic serves every data set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2l_env.data.cache import atomic_write_bytes


def percent_label(ratio: float) -> str:
    """``0.05 -> '5'``, ``0.005 -> '0.5'``: the percent as written in split file names."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"label ratio must be in (0, 1], got {ratio!r}")
    return f"{ratio * 100:.4f}".rstrip("0").rstrip(".")


def split_filename(dataset: str, ratio: float) -> str:
    return f"{dataset}_{percent_label(ratio)}%_image.json"


def choose_labeled_images(image_ids: Sequence[int], ratio: float, seed: int = 0) -> list[int]:
    """A seeded random ``ratio`` of ``image_ids`` (at least one image), sorted."""
    ids = np.array(sorted(set(int(i) for i in image_ids)), dtype=np.int64)
    if ids.size == 0:
        raise ValueError("cannot split an empty set of images")
    count = max(1, int(math.floor(ratio * ids.size + 0.5)))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(ids, size=min(count, ids.size), replace=False))


def read_split_file(path: Path, known_ids: set[int] | None = None) -> list[int]:
    """Read a list of labeled image ids, with a clear error for a missing or corrupt file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"split file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"split file {path} is not valid JSON ({err}); expected a list of image ids") from None
    if not isinstance(data, list) or not all(isinstance(i, int) for i in data):
        raise ValueError(f"split file {path}: expected a JSON list of integer image ids")
    if known_ids is not None:
        unknown = sorted(set(data) - known_ids)
        if unknown:
            raise ValueError(f"split file {path} names {len(unknown)} image ids not in the train split, "
                             f"e.g. {unknown[:5]}")
    return sorted(data)


@dataclass(frozen=True)
class LabelSplit:
    """Labeled and unlabeled train image ids for one label ratio."""

    ratio: float
    labeled: tuple[int, ...]
    unlabeled: tuple[int, ...]
    path: Path | None = None


def label_split(dataset: str, image_ids: Sequence[int], ratio: float, seed: int = 0,
                split_dir: str | Path | None = None) -> LabelSplit:
    """Split ``image_ids`` by ``ratio``; reuse ``split_dir/{dataset}_{pct}%_image.json`` if present.

    With ``ratio == 1`` every image is labeled and no file is written.
    """
    all_ids = sorted(set(int(i) for i in image_ids))
    path = None
    if ratio >= 1.0:
        labeled = all_ids
    elif split_dir is not None and (Path(split_dir) / split_filename(dataset, ratio)).exists():
        path = Path(split_dir) / split_filename(dataset, ratio)
        labeled = read_split_file(path, set(all_ids))
    else:
        labeled = choose_labeled_images(all_ids, ratio, seed)
        if split_dir is not None:
            path = Path(split_dir) / split_filename(dataset, ratio)
            atomic_write_bytes(path, json.dumps(labeled).encode())
    labeled_set = set(labeled)
    unlabeled = [i for i in all_ids if i not in labeled_set]
    return LabelSplit(ratio, tuple(labeled), tuple(unlabeled), path)
