"""Object-attribute targets: per pixel, what every annotated object of a labeled image is.

A phrase names its referent by what it is ("the red circle", "the man") and by how it compares
with the other objects of the image. The labeled images know all of those objects (SynthRef's
scenes; RefCOCO's ``instances.json``), so they can teach the segmenter's features what the
phrases name: for each attribute (SynthRef ``shape``, ``colour``, ``size``; the refer data sets
``category``) a per-pixel class map, 0 = background, trained by the segmenter's object-attribute
heads (``SegmenterConfig.object_classes``, ``Segmenter.train_step(objects=...)``).

Only labeled images get these rows (:func:`l2l_env.loop_data.load_loop_data`): the masks of an
unlabeled image's objects are ground truth and never enter training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from l2l_env.rows import RowSource, _rows_of
from segmenter.config import UNKNOWN_CLASS
from segmenter.data import resize_masks


def object_vocabulary(table: Any, attributes: Sequence[str]) -> dict[str, list[str]]:
    """Per attribute, the sorted values it takes over every annotated object of ``table`` (a
    :class:`~l2l_env.data.types.RefTable`). Class ``k + 1`` of an attribute is its ``k``-th
    value. Raises ``ValueError`` naming an attribute that no object has."""
    values: dict[str, set[str]] = {a: set() for a in attributes}
    seen: set[int] = set()
    known: set[str] = {"category"}
    for ref in table.refs:
        if ref.image_id in seen:
            continue
        seen.add(ref.image_id)
        for obj in ref.objects:
            known.update(obj.attributes)
            for a in attributes:
                v = obj.value(a)
                if v is not None:
                    values[a].add(str(v))
    for a in attributes:
        if not values[a]:
            raise ValueError(f"object_attributes: no object of {table.name}/{table.split} has "
                             f"attribute {a!r}; its objects have {sorted(known)}")
    return {a: sorted(v) for a, v in values.items()}


def config_vocabulary(config: Any, table: Any) -> dict[str, list[str]] | None:
    """The object vocabulary of a data config's resolved ``object_attributes`` in the train
    ``table`` (:func:`object_vocabulary`); None when the config names none."""
    attributes = config.resolved_object_attributes()
    return object_vocabulary(table, attributes) if attributes else None


class ObjectRows(RowSource):
    """Row ``r`` is (len(vocabulary), size, size) int8: for each attribute, the class of the
    object under each pixel (1 + the value's index in ``vocabulary[attribute]``; 0 background),
    painted from every annotated object's mask of the row's image, largest object first so that
    smaller ones stay visible on top; an object without that attribute is ``UNKNOWN_CLASS``. Sentences
    of one image share its maps (decoded once per batch)."""

    def __init__(self, records: Sequence[Any], refs: np.ndarray, size: int,
                 vocabulary: dict[str, list[str]]) -> None:
        self.records, self.refs, self.size = records, np.asarray(refs, dtype=np.int64), int(size)
        self.vocabulary = {a: list(v) for a, v in vocabulary.items()}
        self.index = {a: {v: k + 1 for k, v in enumerate(vals)}
                      for a, vals in self.vocabulary.items()}
        self.dtype, self.row_shape = np.dtype(np.int8), (len(vocabulary), self.size, self.size)
        self.count = len(self.refs)
        if any(len(v) > 126 for v in self.vocabulary.values()):
            raise ValueError("ObjectRows holds at most 126 classes per attribute (int8)")

    def image_maps(self, record: Any) -> np.ndarray:
        """The (attributes, size, size) class maps of ``record``'s image."""

        out = np.zeros(self.row_shape, dtype=np.int8)
        objects = list(record.objects)
        if not objects:
            raise ValueError(f"ref {record.ref_id} (image {record.image_id}) lists no annotated "
                             "objects: it cannot give object-attribute targets")
        masks = resize_masks(np.stack([o.load_mask() for o in objects]), self.size)
        for k in np.argsort(-masks.reshape(len(objects), -1).sum(1), kind="stable"):
            obj = objects[int(k)]
            for h, (a, index) in enumerate(self.index.items()):
                value = obj.value(a)
                out[h][masks[k]] = (index.get(str(value), UNKNOWN_CLASS) if value is not None
                                    else UNKNOWN_CLASS)
        return out

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + self.row_shape, dtype=np.int8)
        decoded: dict[int, np.ndarray] = {}
        for i, ref in enumerate(self.refs[rows]):
            ref = int(ref)
            image = int(self.records[ref].image_id)
            if image not in decoded:
                decoded[image] = self.image_maps(self.records[ref])
            out[i] = decoded[image]
        return out

    def take(self, rows: Sequence[int] | np.ndarray) -> ObjectRows:
        rows = _rows_of(np.asarray(rows, dtype=np.int64), self.count)
        return ObjectRows(self.records, self.refs[rows], self.size, self.vocabulary)
