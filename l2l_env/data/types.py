"""The records every data set produces, and the one sequence type that serves them.

A data set (SynthRef, RefCOCO, ...) is described by a :class:`RefTable`: its images (loaded
lazily by id) and its referred objects (:class:`RefRecord`, one per referred object, each with one
or more sentences). :class:`RefSplit` turns a table into the sequence of
:class:`ReferringSample` that users index, in one of two modes, as the refer protocol has it:

* ``per_ref`` (training): one sample per referred object; the sentence is drawn at random,
  seeded by ``(seed, epoch, ref_id)``, so each epoch sees another phrasing.
* ``per_sentence`` (evaluation): one sample per sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import numpy as np

from segmenter.shared.disk_cache import content_key, file_digest

Box = tuple[float, float, float, float]
"""An axis-aligned box ``(x, y, w, h)`` in pixels of the original image."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object annotated in an image: its box, category, attributes and (optionally) mask.

    Priors may look at the box, category and attributes (a simulated MLLM grounds by picking one
    of them), never at masks. The masks of *labeled* images' objects train the segmenter's
    object-attribute heads (:class:`l2l_env.objects.ObjectRows`); an unlabeled image's never do.
    """

    box: Box
    category: str
    attributes: dict[str, str] = field(default_factory=dict)
    mask: Callable[[], np.ndarray] | np.ndarray | None = field(default=None, compare=False,
                                                               repr=False)
    """HxW bool, or a loader of it (None: not annotated)."""

    def value(self, attribute: str) -> str | None:
        """The object's ``attribute``: ``"category"`` or a key of ``attributes`` (None: it has
        no such attribute)."""
        return self.category if attribute == "category" else self.attributes.get(attribute)

    def load_mask(self) -> np.ndarray:
        """The object's HxW bool mask; ``ValueError`` when it has none."""
        if self.mask is None:
            raise ValueError(f"object {self.category!r} at {self.box} has no mask annotation")
        mask = self.mask() if callable(self.mask) else self.mask
        return np.asarray(mask, dtype=bool)


@dataclass(frozen=True)
class RefRecord:
    """One referred object and the sentences that refer to it."""

    ref_id: int
    image_id: int
    box: Box
    sentences: tuple[tuple[int, str], ...]  # (sent_id, text)
    mask: Callable[[], np.ndarray] | np.ndarray  # HxW bool, or a loader of it
    objects: tuple[ObjectInfo, ...] = ()  # every annotated object of the image, referent included
    referent: int = -1  # index of the referent in ``objects`` (-1: unknown)
    category: str = ""

    def load_mask(self) -> np.ndarray:
        mask = self.mask() if callable(self.mask) else self.mask
        return np.asarray(mask, dtype=bool)


@dataclass(frozen=True)
class ReferringSample:
    """One image-phrase pair with its referent's mask (``mask`` is HxW bool at image size)."""

    image: np.ndarray  # HxWx3 uint8, original size
    mask: np.ndarray  # HxW bool
    phrase: str
    image_id: int
    ref_id: int
    sent_id: int
    box: Box
    objects: tuple[ObjectInfo, ...] = ()
    referent: int = -1

    @property
    def sample_id(self) -> str:
        """A key that names this image-phrase pair uniquely within its data set."""
        return f"{self.ref_id}:{self.sent_id}"


@dataclass
class RefTable:
    """A data set split as records: images by id plus referred objects."""

    name: str
    split: str
    refs: list[RefRecord]
    load_image: Callable[[int], np.ndarray]
    sources: tuple[str, ...] = ()
    """The annotation files the records were read from (none for generated data)."""

    @property
    def image_ids(self) -> list[int]:
        return sorted({r.image_id for r in self.refs})

    def num_sentences(self) -> int:
        return sum(len(r.sentences) for r in self.refs)

    def check_images(self) -> None:
        """Check every image of the table cheaply (file headers) when its loader can, so that a
        missing or corrupt image is named before any long work (in-memory data sets: nothing)."""
        check = getattr(self.load_image, "check", None)
        if check is not None:
            for image_id in self.image_ids:
                check(image_id)

    def subset(self, image_ids: set[int] | Sequence[int]) -> RefTable:
        """The records whose image is in ``image_ids`` (how labeled/unlabeled splits are made)."""
        keep = set(int(i) for i in image_ids)
        return RefTable(self.name, self.split, [r for r in self.refs if r.image_id in keep],
                        self.load_image, self.sources)

    def fingerprint(self) -> str:
        """A key of what the table was read from: its records (ids, boxes, sentences), the
        hashes of its annotation files and its loader's key of the image files (sizes and
        modification times) when it has one; a cache built from the table is keyed by it."""
        records = [[r.ref_id, r.image_id, list(r.box), [list(s) for s in r.sentences]]
                   for r in self.refs]
        images = getattr(self.load_image, "fingerprint", None)
        return content_key({"name": self.name, "split": self.split, "records": records,
                            "sources": [file_digest(p) for p in self.sources],
                            "images": images() if images is not None else None})


Mode = Literal["per_ref", "per_sentence"]


class RefSplit(Sequence[ReferringSample]):
    """The sequence of samples of a :class:`RefTable` (see the module docstring for modes)."""

    def __init__(self, table: RefTable, mode: Mode = "per_sentence", seed: int = 0,
                 epoch: int = 0) -> None:
        if mode not in ("per_ref", "per_sentence"):
            raise ValueError(f"mode must be 'per_ref' or 'per_sentence', got {mode!r}")
        self.table = table
        self.mode: Mode = mode
        self.seed = int(seed)
        self.epoch = int(epoch)
        if mode == "per_sentence":
            self._index = [(i, j) for i, r in enumerate(table.refs) for j in range(len(r.sentences))]
        else:
            self._index = [(i, -1) for i in range(len(table.refs))]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def split(self) -> str:
        return self.table.split

    def set_epoch(self, epoch: int) -> None:
        """Draw other sentences in ``per_ref`` mode (the draw is a function of seed and epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._index)

    def _sentence_index(self, ref: RefRecord) -> int:
        if len(ref.sentences) == 1:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, ref.ref_id])
        return int(rng.integers(len(ref.sentences)))

    def record(self, index: int) -> tuple[RefRecord, int]:
        """The record and sentence position behind sample ``index`` (no image is loaded)."""
        ref_pos, sent_pos = self._index[index]
        ref = self.table.refs[ref_pos]
        if sent_pos < 0:
            sent_pos = self._sentence_index(ref)
        return ref, sent_pos

    def phrase(self, index: int) -> str:
        ref, pos = self.record(index)
        return ref.sentences[pos][1]

    @overload
    def __getitem__(self, index: int) -> ReferringSample: ...
    @overload
    def __getitem__(self, index: slice) -> list[ReferringSample]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        ref, pos = self.record(index % len(self))
        sent_id, text = ref.sentences[pos]
        return ReferringSample(
            image=self.table.load_image(ref.image_id),
            mask=ref.load_mask(),
            phrase=text,
            image_id=ref.image_id,
            ref_id=ref.ref_id,
            sent_id=sent_id,
            box=ref.box,
            objects=ref.objects,
            referent=ref.referent,
        )
