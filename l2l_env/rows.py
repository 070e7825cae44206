"""Row sources: the heavy fields of a :class:`~l2l_env.bank.SampleBank`, produced on demand.

A bank row is one sentence. Nothing per row is held beyond small metadata: ``source[i]`` gives one
row, ``source[rows]`` (an int array, a list or a slice) a stacked batch, computed when asked:

* :class:`ImageRows`: images from an :class:`ImageStore` (one resized uint8 image per *image*,
  shared by its sentences): a packed cache file on disk (:class:`PackedImages`, built once per
  data set, split and size, read row by row) or images decoded on demand
  (:class:`DecodedImages`, for tables whose loader cannot name its source).
* :class:`ProposalRows` / :class:`GridRows`: soft prior proposals rendered from the stored boxes
  (``PriorTable.proposals``) at the input size, and their average over the action grid.
* :class:`MaskRows`: ground-truth masks decoded from the annotation (polygons / RLE, with
  pycocotools; SynthRef: its label maps) and resized per batch.

Every source gives the same values as the eager arrays of earlier versions for the same rows
(tests/test_rows.py compares them bit for bit). ``take(rows)`` re-indexes a source without
computing anything; :class:`ConcatRows` chains two.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from l2l_env.data.cache import cache_dir, config_key
from l2l_env.packed import HEAD, read_header
from segmenter.data import resize_images, resize_masks
from segmenter.shared.disk_cache import CacheFile, content_key
from segmenter.shared.files import atomic_file, sweep_temporaries

Index = int | np.integer | slice | Sequence[int] | np.ndarray


def pool_to_grid(maps: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool (N, H, W) maps to (N, grid, grid) float32."""
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(t, grid)[:, 0].numpy()


def _rows_of(key: Index, n: int) -> np.ndarray:
    """``key`` (a slice, int array, bool mask or list) as int64 row positions in ``range(n)``."""
    if isinstance(key, slice):
        return np.arange(n, dtype=np.int64)[key]
    rows = np.asarray(key)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"boolean index of shape {rows.shape} for {n} rows")
        return np.flatnonzero(rows)
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"rows must be an int, a slice or a 1-D int array, got {key!r:.80}")
    if rows.min() < -n or rows.max() >= n:
        raise IndexError(f"row index out of range for {n} rows: {rows.min()}..{rows.max()}")
    return np.where(rows < 0, rows + n, rows).astype(np.int64)


class RowSource:
    """Rows computed on demand. Subclasses define :meth:`fetch` (rows -> stacked array) and
    :meth:`take`, and set ``dtype``, ``row_shape`` and ``count``."""

    dtype: np.dtype
    row_shape: tuple[int, ...]
    count: int

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, ...]:
        """``(rows,) + row_shape``, as the eager array had."""
        return (self.count,) + tuple(self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __getitem__(self, key: Index) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -self.count <= i < self.count:
                raise IndexError(f"row {i} out of range for {self.count} rows")
            return self.fetch(np.array([i % self.count], dtype=np.int64))[0]
        return self.fetch(_rows_of(key, self.count))

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """The stacked values of ``rows`` (int64 positions, already checked)."""
        raise NotImplementedError

    def take(self, rows: Sequence[int] | np.ndarray) -> RowSource:
        """A source of the listed rows, in that order (nothing is computed)."""
        raise NotImplementedError

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every row at once (small banks and tests only: this is the eager array)."""
        out = self.fetch(np.arange(self.count, dtype=np.int64))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={np.dtype(self.dtype).name})"


def _empty(source: RowSource) -> np.ndarray:
    return np.zeros((0,) + tuple(source.row_shape), dtype=source.dtype)


class ConcatRows(RowSource):
    """The rows of ``first`` then those of ``second`` (same row shape and dtype)."""

    def __init__(self, first: RowSource, second: RowSource) -> None:
        if tuple(first.row_shape) != tuple(second.row_shape) or first.dtype != second.dtype:
            raise ValueError(f"cannot concatenate {first!r} and {second!r}: rows differ")
        self.first, self.second = first, second
        self.dtype, self.row_shape = first.dtype, tuple(first.row_shape)
        self.count = len(first) + len(second)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        n = len(self.first)
        out = np.empty((len(rows),) + self.row_shape, dtype=self.dtype)
        low = rows < n
        if low.any():
            out[low] = self.first.fetch(rows[low])
        if (~low).any():
            out[~low] = self.second.fetch(rows[~low] - n)
        return out

    def take(self, rows: Sequence[int] | np.ndarray) -> RowSource:
        rows = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        n = len(self.first)
        if (rows < n).all():
            return self.first.take(rows)
        if (rows >= n).all():
            return self.second.take(rows - n)
        return _Reindexed(self, rows)


class _Reindexed(RowSource):
    """Rows of another source in a given order (used where a cheaper re-index is not known)."""

    def __init__(self, base: RowSource, rows: np.ndarray) -> None:
        self.base, self.rows = base, np.asarray(rows, dtype=np.int64)
        self.dtype, self.row_shape, self.count = base.dtype, tuple(base.row_shape), len(self.rows)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        return self.base.fetch(self.rows[rows])

    def take(self, rows: Sequence[int] | np.ndarray) -> RowSource:
        picked = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        return _Reindexed(self.base, self.rows[picked])


def concat_rows(first: RowSource | None, second: RowSource | None) -> RowSource | None:
    """``ConcatRows(first, second)``, or ``None`` when either is missing."""
    if first is None or second is None:
        return None
    return ConcatRows(first, second)


# --------------------------------------------------------------------------- images

class ImageStore:
    """One resized (S, S, 3) uint8 image per image of ``image_ids``, read by position;
    ``sizes`` (N, 2) holds each image's original ``(height, width)``."""

    size: int
    sizes: np.ndarray
    image_ids: list[int]

    def __len__(self) -> int:
        return len(self.sizes)

    def positions(self, image_ids: Sequence[int]) -> np.ndarray:
        """The positions of ``image_ids`` in this store (a ``KeyError`` names a missing one)."""
        lookup = {i: k for k, i in enumerate(self.image_ids)}
        try:
            return np.array([lookup[int(i)] for i in image_ids], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"image id {err.args[0]} is not in this image store "
                           f"({len(self)} images)") from None

    def read(self, positions: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 images at ``positions``."""
        raise NotImplementedError


PACK_MAGIC = b"L2LIMG01"


class PackedImages(ImageStore):
    """Images packed in one file: a header (magic, count, size), the original sizes, then the
    resized images row after row. Each read opens the file and reads only the rows asked for
    (no memory map: nothing of the file stays in this process's memory)."""

    def __init__(self, path: str | os.PathLike, image_ids: Sequence[int]) -> None:
        self.path = Path(path)
        self.image_ids = [int(i) for i in image_ids]
        count, size, table, length = read_header(self.path, PACK_MAGIC, lambda n: 16 * n,
                                                 "image cache")
        sizes = np.frombuffer(table, dtype="<i8").reshape(-1, 2)
        self.size = int(size)
        self.row_bytes = self.size * self.size * 3
        self.offset = HEAD.size + 16 * int(count)
        if len(sizes) != count or length != self.offset + count * self.row_bytes:
            raise ValueError(f"image cache {self.path} holds {length} bytes; expected "
                             f"{self.offset + count * self.row_bytes} for {count} images of "
                             f"{self.size}x{self.size} (cut short?): delete it to rebuild it")
        if count != len(self.image_ids):
            raise ValueError(f"image cache {self.path} holds {count} images; expected "
                             f"{len(self.image_ids)}: delete it to rebuild it")
        self.sizes = sizes.astype(np.int64)

    def read(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        if len(positions) == 0:
            return out
        if positions.min() < 0 or positions.max() >= len(self):
            raise IndexError(f"image position out of range for {len(self)} images in {self.path}")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, p in enumerate(positions):
                buf = os.pread(fd, self.row_bytes, self.offset + int(p) * self.row_bytes)
                if len(buf) != self.row_bytes:
                    raise ValueError(f"image cache {self.path}: short read at image {int(p)}")
                out[i] = np.frombuffer(buf, dtype=np.uint8).reshape(self.size, self.size, 3)
        finally:
            os.close(fd)
        return out


def write_packed_images(path: str | os.PathLike, load: Callable[[int], np.ndarray],
                        image_ids: Sequence[int], size: int,
                        progress: Callable[[int], None] | None = None) -> PackedImages:
    """Decode, resize and append every image of ``image_ids`` to ``path``, written atomically
    (an interrupted build leaves no file), and open it."""

    sizes = np.zeros((len(image_ids), 2), dtype="<i8")
    with atomic_file(path) as fh:
        fh.write(HEAD.pack(PACK_MAGIC, len(image_ids), int(size)))
        fh.write(sizes.tobytes())  # placeholder, rewritten below
        for k, image_id in enumerate(image_ids):
            image = np.asarray(load(image_id))
            sizes[k] = image.shape[:2]
            fh.write(np.ascontiguousarray(resize_images(image[None], size)[0]).tobytes())
            if progress is not None:
                progress(k)
        fh.seek(HEAD.size)
        fh.write(sizes.tobytes())
    return PackedImages(path, image_ids)


class DecodedImages(ImageStore):
    """Images decoded by ``load(image_id)`` and resized when read, with a small LRU of resized
    images (for tables whose loader has no ``fingerprint``, so no disk cache can be keyed)."""

    def __init__(self, load: Callable[[int], np.ndarray], image_ids: Sequence[int], size: int,
                 cache_images: int = 64) -> None:
        self.load, self.image_ids, self.size = load, [int(i) for i in image_ids], int(size)
        self.cache_images = int(cache_images)
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self.sizes = np.array([np.asarray(load(i)).shape[:2] for i in self.image_ids],
                              dtype=np.int64).reshape(-1, 2)

    def read(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        for i, p in enumerate(np.asarray(positions, dtype=np.int64)):
            p = int(p)
            if p in self._lru:
                self._lru.move_to_end(p)
            else:
                self._lru[p] = resize_images(np.asarray(self.load(self.image_ids[p]))[None],
                                             self.size)[0]
                while len(self._lru) > self.cache_images:
                    self._lru.popitem(last=False)
            out[i] = self._lru[p]
        return out


def image_cache_path(cache_root: str | os.PathLike | None, dataset: str, split: str, size: int,
                     image_ids: Sequence[int], fingerprint: str) -> Path:
    """Where the packed images of these ids at ``size`` are cached (keyed by data set, split,
    size, the ids and the loader's fingerprint of its source)."""

    key = config_key({"ids": config_key([int(i) for i in image_ids], 32), "size": int(size),
                      "source": fingerprint, "version": 1})
    safe = dataset.replace("/", "_").replace("+", "plus")
    return cache_dir(cache_root) / "images" / safe / split / f"{size}-{key}.u8"


def image_store(load: Callable[[int], np.ndarray], dataset: str, split: str,
                image_ids: Sequence[int], size: int, *,
                cache_root: str | os.PathLike | None = None, progress: bool = False) -> ImageStore:
    """The image store of ``image_ids`` at ``size``: the packed cache file (built on first use,
    then reused) when ``load`` has a ``fingerprint()`` naming its source, else images decoded on
    demand."""
    fingerprint = getattr(load, "fingerprint", None)
    if fingerprint is None:
        return DecodedImages(load, image_ids, size)
    source = fingerprint()
    path = image_cache_path(cache_root, dataset, split, size, image_ids, source)
    cache = CacheFile(path, content_key({"source": source, "size": int(size),
                                         "ids": [int(i) for i in image_ids]}), "image cache")

    def open_packed(file: Path) -> PackedImages:
        store = PackedImages(file, image_ids)
        if store.size != size:
            raise ValueError(f"images of {store.size}px, expected {size}px")
        return store

    store = cache.read(open_packed)
    if store is not None:
        return store
    if path.parent.is_dir():
        sweep_temporaries(path.parent)
    bar = None
    if progress:
        bar = tqdm(total=len(image_ids), desc=f"image cache {dataset}/{split} {size}px",
                   leave=False)
    try:
        store = write_packed_images(path, load, image_ids, size,
                                    None if bar is None else (lambda _k: bar.update(1)))
    finally:
        if bar is not None:
            bar.close()
    cache.seal()
    return store


class ImageRows(RowSource):
    """Per row, the image at ``positions[row]`` of ``store``."""

    def __init__(self, store: ImageStore, positions: np.ndarray) -> None:
        self.store, self.positions = store, np.asarray(positions, dtype=np.int64)
        self.dtype, self.row_shape = np.dtype(np.uint8), (store.size, store.size, 3)
        self.count = len(self.positions)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return _empty(self)
        want = self.positions[rows]
        unique, inverse = np.unique(want, return_inverse=True)
        return self.store.read(unique)[inverse]

    def take(self, rows: Sequence[int] | np.ndarray) -> ImageRows:
        picked = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        return ImageRows(self.store, self.positions[picked])

    def image_sizes(self) -> np.ndarray:
        """(rows, 2) original ``(height, width)`` of each row's image."""
        return self.store.sizes[self.positions]


# --------------------------------------------------------------------------- priors

class ProposalRows(RowSource):
    """Soft proposals of ``kind`` at ``size`` rendered from ``priors`` (a ``PriorTable``) for
    each row's sample id, clipped to [0, 1] float32."""

    def __init__(self, priors: Any, sample_ids: Sequence[str], size: int,
                 kind: str = "box") -> None:
        self.priors, self.sample_ids = priors, list(sample_ids)
        self.size, self.kind = int(size), kind
        self.dtype, self.row_shape = np.dtype(np.float32), (self.size, self.size)
        self.count = len(self.sample_ids)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return _empty(self)
        maps = self.priors.proposals([self.sample_ids[int(r)] for r in rows], self.size,
                                     self.size, kind=self.kind)
        return np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)

    def take(self, rows: Sequence[int] | np.ndarray) -> ProposalRows:
        rows = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        return ProposalRows(self.priors, [self.sample_ids[int(r)] for r in rows], self.size,
                            self.kind)


class GridRows(RowSource):
    """The maps of another source averaged over a ``grid`` x ``grid`` grid."""

    def __init__(self, maps: RowSource, grid: int) -> None:
        self.maps, self.grid = maps, int(grid)
        self.dtype, self.row_shape = np.dtype(np.float32), (self.grid, self.grid)
        self.count = len(maps)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return _empty(self)
        return pool_to_grid(self.maps.fetch(rows), self.grid)

    def take(self, rows: Sequence[int] | np.ndarray) -> GridRows:
        return GridRows(self.maps.take(rows), self.grid)


# --------------------------------------------------------------------------- masks

class MaskRows(RowSource):
    """Ground-truth masks: row ``r`` is ``records[refs[r]].load_mask()`` (an HxW mask decoded
    from its annotation: polygons or RLE through pycocotools, SynthRef's label maps) resized to
    ``size`` by nearest neighbour, bool."""

    def __init__(self, records: Sequence[Any], refs: np.ndarray, size: int) -> None:
        self.records, self.refs, self.size = records, np.asarray(refs, dtype=np.int64), int(size)
        self.dtype, self.row_shape = np.dtype(bool), (self.size, self.size)
        self.count = len(self.refs)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.size, self.size), dtype=bool)
        decoded: dict[int, np.ndarray] = {}
        for i, ref in enumerate(self.refs[rows]):
            ref = int(ref)
            if ref not in decoded:
                mask = np.asarray(self.records[ref].load_mask(), dtype=bool)
                decoded[ref] = resize_masks(mask[None], self.size)[0]
            out[i] = decoded[ref]
        return out

    def take(self, rows: Sequence[int] | np.ndarray) -> MaskRows:
        rows = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        return MaskRows(self.records, self.refs[rows], self.size)
