"""Data sets: SynthRef (built in, procedural) and RefCOCO / RefCOCO+ / RefCOCOg (refer format).

``load_split(dataset, split)`` is the one entry point; every data set is a :class:`RefTable` behind
it, so splitting, sampling modes and visualisation are shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields

from l2l_env.data import refcoco, synthref
from l2l_env.data.refcoco import OPTIONS
from l2l_env.data.splits import LabelSplit, label_split, split_filename
from l2l_env.data.synthref import SynthRefConfig
from l2l_env.data.types import (Box, ObjectInfo, RefRecord, RefSplit, RefTable, ReferringSample)

TableLoader = Callable[..., RefTable]


def _synthref(split: str, data_root: str | os.PathLike | None = None, **options) -> RefTable:
    return synthref.load_table(split, data_root=data_root, **options)


def _refer(dataset: str) -> TableLoader:
    def load(split: str, data_root: str | os.PathLike | None = None, **options) -> RefTable:
        return refcoco.load_table(dataset, split, data_root=data_root, **options)
    return load


DATASETS: dict[str, TableLoader] = {
    "synthref": _synthref,
    "refcoco": _refer("refcoco"),
    "refcoco+": _refer("refcoco+"),
    "refcocog": _refer("refcocog"),
}

OBJECT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "synthref": ("shape", "colour", "size"),
    "refcoco": ("category",),
    "refcoco+": ("category",),
    "refcocog": ("category",),
}
"""Each data set's annotated object attributes: the default targets of the segmenter's
object-attribute heads (:mod:`l2l_env.objects`)."""

SPLITS: dict[str, tuple[str, ...]] = {
    "synthref": ("train", "val", "testA", "testB"),
    "refcoco": ("train", "val", "testA", "testB"),
    "refcoco+": ("train", "val", "testA", "testB"),
    "refcocog": ("train", "val", "test"),
}


def dataset_options(dataset: str) -> tuple[str, ...]:
    """The ``data_options`` keys the loader of ``dataset`` takes."""
    if dataset == "synthref":
        return tuple(f.name for f in fields(SynthRefConfig)) + ("regenerate", "progress")
    return OPTIONS


def check_options(dataset: str, options: dict) -> None:
    """Raise ``ValueError`` naming the ``data_options`` keys that ``dataset``'s loader does not take."""
    known = dataset_options(dataset)
    bad = sorted(set(options) - set(known))
    if bad:
        raise ValueError(f"data_options {bad} are not options of the {dataset} loader (it takes "
                         f"{list(known)}); remove them (data_options={{}} clears the table)")


def load_table(dataset: str, split: str, data_root: str | os.PathLike | None = None,
               **options) -> RefTable:
    """The :class:`RefTable` of one split of ``dataset``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    if split not in SPLITS[dataset] and not options.get("split_by"):  # other splitBy: loader checks
        raise ValueError(f"unknown split {split!r} for {dataset}; expected one of {SPLITS[dataset]}")
    return DATASETS[dataset](split, data_root=data_root, **options)


def load_split(dataset: str, split: str, data_root: str | os.PathLike | None = None, *,
               mode: str | None = None, sample_seed: int = 0, epoch: int = 0,
               **options) -> RefSplit:
    """The samples of one split: a sequence (``len``, indexing) of :class:`ReferringSample`.

    ``mode`` defaults to ``per_ref`` for ``train`` (one sample per referred object, a seeded random
    sentence per epoch, drawn from ``sample_seed``) and ``per_sentence`` for evaluation splits.
    Other ``options`` go to the data set's loader (e.g. ``num_train`` or ``seed`` for SynthRef,
    ``image_dir`` or ``split_by`` for RefCOCO).
    """
    table = load_table(dataset, split, data_root=data_root, **options)
    if mode is None:
        mode = "per_ref" if split == "train" else "per_sentence"
    return RefSplit(table, mode=mode, seed=sample_seed, epoch=epoch)


__all__ = [
    "Box", "DATASETS", "OBJECT_ATTRIBUTES", "LabelSplit", "ObjectInfo", "RefRecord", "RefSplit",
    "RefTable",
    "ReferringSample", "SPLITS", "check_options", "dataset_options", "label_split", "load_split", "load_table", "split_filename",
]
