"""Hand-made referring samples for prior tests: random scenes of attributed boxes, no data set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from l2l_env.data.types import ObjectInfo, RefRecord, RefTable, ReferringSample
from l2l_env.priors.base import Grounding, PriorProvider

COLOURS = ("red", "green", "blue")
SHAPES = ("circle", "square", "star")
SIZES = ("small", "large")


def _objects(rng: np.random.Generator, size: int, count: int) -> tuple[ObjectInfo, ...]:
    objs = []
    for _ in range(count):
        w, h = rng.uniform(0.12, 0.3, size=2) * size
        x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        objs.append(ObjectInfo(box=(float(x), float(y), float(w), float(h)), category=shape,
                               attributes={"colour": COLOURS[int(rng.integers(len(COLOURS)))],
                                           "shape": shape,
                                           "size": SIZES[int(w * h > 0.04 * size * size)]}))
    return tuple(objs)


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    x, y, w, h = box
    m = np.zeros((height, width), dtype=bool)
    m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = True
    return m


def make_records(n_refs: int, seed: int = 0, size: int = 48, sentences: int = 2,
                 start_id: int = 0) -> tuple[list[RefRecord], dict[int, np.ndarray]]:
    """``n_refs`` records (one per image), ``sentences`` each, consecutive unique sent ids."""
    rng = np.random.default_rng(seed)
    refs, images = [], {}
    for r in range(n_refs):
        objs = _objects(rng, size, int(rng.integers(2, 6)))
        referent = int(rng.integers(len(objs)))
        image_id = start_id + r
        images[image_id] = np.full((size, size, 3), r % 255, dtype=np.uint8)
        sents = tuple((start_id + r * sentences + k, f"phrase {r}.{k}") for k in range(sentences))
        refs.append(RefRecord(ref_id=start_id + r, image_id=image_id, box=objs[referent].box,
                              sentences=sents, mask=box_mask(objs[referent].box, size, size),
                              objects=objs, referent=referent, category=objs[referent].category))
    return refs, images


def make_table(n_refs: int, seed: int = 0, size: int = 48, sentences: int = 2,
               split: str = "val") -> RefTable:
    refs, images = make_records(n_refs, seed, size, sentences)
    return RefTable("handmade", split, refs, images.__getitem__)


def make_samples(n_refs: int, seed: int = 0, size: int = 48,
                 sentences: int = 1) -> list[ReferringSample]:
    """Per-sentence samples of :func:`make_table`."""
    from l2l_env.data.types import RefSplit
    return list(RefSplit(make_table(n_refs, seed, size, sentences), "per_sentence"))


class CountingProvider(PriorProvider):
    """Wraps a provider, counts the samples it is asked about, can fail after some calls."""

    name = "counting"

    def __init__(self, inner: PriorProvider, fail_after_calls: int | None = None) -> None:
        self.inner = inner
        self.fail_after_calls = fail_after_calls
        self.calls = 0
        self.seen: list[str] = []

    def config(self) -> dict:
        return self.inner.config()  # transparent: its cache files are the inner provider's

    def ground_batch(self, samples, split=None) -> list[Grounding]:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.seen.extend(s.sample_id for s in samples)
        return self.inner.ground_batch(samples, split)
