"""The samples an environment works on: per sentence, small metadata plus row sources.

A :class:`SampleBank` gives, for every sentence of a set of referred objects, the image resized to
the segmenter's input size, the soft prior proposal at that size and at the action grid, the
no-prior flag and the phrase. The heavy fields are :mod:`l2l_env.rows` sources computed per batch
(images read from a per-image store, priors rendered from their boxes, masks decoded from their
annotations), so memory does not grow with the data set beyond small per-sample metadata.
Ground-truth masks are given only when asked for: the labeled bank needs them as training
targets; for the unlabeled bank they are kept apart, in a :class:`GroundTruthVault`, which only
diagnostics and the ``oracle`` reward may open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from l2l_env.data.types import RefSplit, RefTable
from l2l_env.objects import ObjectRows
from l2l_env.rows import (GridRows, ImageRows, ImageStore, MaskRows, ProposalRows,
                          RowSource, concat_rows, image_store, pool_to_grid)

__all__ = ["GroundTruthVault", "SampleBank", "build_bank", "concat_banks", "pool_to_grid",
           "train_image_store"]


@dataclass
class SampleBank:
    """The sentences of a set of referred objects (row = one sentence); ``images``, ``priors``,
    ``prior_grid``, ``masks``, ``distractors`` and ``objects`` are row sources
    (``bank.images[rows]`` gives the stacked array of those rows)."""

    sample_ids: list[str]
    phrases: list[str]
    images: RowSource  # (N, S, S, 3) uint8
    priors: RowSource  # (N, S, S) float32 soft proposal at input size
    prior_grid: RowSource  # (N, G, G) float32
    no_prior: np.ndarray  # (N,) bool
    prior_score: np.ndarray  # (N,) float32: the provider's confidence in its grounding
    ref_rows: list[list[int]]  # rows of each referred object's sentences
    masks: RowSource | None = None  # (N, S, S) bool, only when built with masks
    distractors: RowSource | None = None
    """(N, S, S) float32: a wrong prior per sentence (a simulated grounding error, mostly a box on
    another object of the image; :func:`l2l_env.priors.load_mistake_priors`), for training the
    segmenter to distrust a wrong prior, when built with distractors."""
    objects: RowSource | None = None
    """(N, A, S, S) int8: per attribute, the class of every annotated object under each pixel
    (:class:`l2l_env.objects.ObjectRows`), targets of the segmenter's object-attribute heads;
    labeled banks only, when built with an object vocabulary."""

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def num_refs(self) -> int:
        return len(self.ref_rows)

    def take(self, rows: list[int] | np.ndarray) -> SampleBank:
        """A bank of the referred objects whose rows are listed (rows re-numbered)."""
        rows = [int(r) for r in rows]
        keep = set(rows)
        ref_rows, new_index, order = [], {}, []
        for group in self.ref_rows:
            chosen = [r for r in group if r in keep]
            if chosen:
                for r in chosen:
                    new_index[r] = len(order)
                    order.append(r)
                ref_rows.append([new_index[r] for r in chosen])
        idx = np.array(order, dtype=np.int64)
        return SampleBank([self.sample_ids[i] for i in order], [self.phrases[i] for i in order],
                          self.images.take(idx), self.priors.take(idx), self.prior_grid.take(idx),
                          self.no_prior[idx], self.prior_score[idx], ref_rows,
                          None if self.masks is None else self.masks.take(idx),
                          None if self.distractors is None else self.distractors.take(idx),
                          None if self.objects is None else self.objects.take(idx))


def concat_banks(first: SampleBank, second: SampleBank) -> SampleBank:
    """The rows of ``first`` then those of ``second`` (masks, distractors and object targets
    dropped)."""
    n = len(first)
    return SampleBank(first.sample_ids + second.sample_ids, first.phrases + second.phrases,
                      concat_rows(first.images, second.images),
                      concat_rows(first.priors, second.priors),
                      concat_rows(first.prior_grid, second.prior_grid),
                      np.concatenate([first.no_prior, second.no_prior]),
                      np.concatenate([first.prior_score, second.prior_score]),
                      first.ref_rows + [[r + n for r in g] for g in second.ref_rows],
                      concat_rows(first.masks, second.masks))


def train_image_store(table: RefTable, image_size: int,
                      cache_root: str | os.PathLike | None = None,
                      progress: bool = False) -> ImageStore:
    """The image store of every image of ``table`` at ``image_size`` (a packed cache built once
    under ``cache_root``, see :func:`l2l_env.rows.image_store`); banks of subsets of the table
    share it."""
    return image_store(table.load_image, table.name, table.split, table.image_ids, image_size,
                       cache_root=cache_root, progress=progress)


def build_bank(table: RefTable, priors, image_size: int, grid_size: int, *,
               proposal: str = "box", with_masks: bool = True,
               distractors: Any = None, images: ImageStore | None = None,
               cache_root: str | os.PathLike | None = None,
               objects: dict[str, list[str]] | None = None) -> SampleBank:
    """The bank of every sentence of ``table``: images, proposals from ``priors`` (a
    PriorTable) and their scores, masks, all as row sources (nothing heavy is computed here).

    ``images``: an image store holding every image of ``table`` (default: the table's own,
    :func:`train_image_store` under ``cache_root``). Masks are given only when ``with_masks``
    is true. ``distractors``: a prior table of wrong groundings (see
    :func:`l2l_env.priors.load_mistake_priors`) whose proposals become
    :attr:`SampleBank.distractors`. ``objects``: an object vocabulary
    (:func:`l2l_env.objects.object_vocabulary`) whose per-pixel classes become
    :attr:`SampleBank.objects` (only with ``with_masks``: labeled data).
    """
    if objects and not with_masks:
        raise ValueError("build_bank: object targets are ground truth; they need with_masks=True "
                         "(a labeled bank)")
    split = RefSplit(table, "per_sentence")
    if images is None:
        images = train_image_store(table, image_size, cache_root)
    if images.size != image_size:
        raise ValueError(f"image store of size {images.size} for a bank of size {image_size}")
    sample_ids, phrases, image_rows, ref_index, records = [], [], [], [], []
    row_of_ref: dict[int, list[int]] = {}
    ref_position: dict[int, int] = {}
    for i in range(len(split)):
        ref, pos = split.record(i)
        sent_id, text = ref.sentences[pos]
        image_rows.append(ref.image_id)
        row = len(sample_ids)
        sample_ids.append(f"{ref.ref_id}:{sent_id}")
        phrases.append(text)
        if ref.ref_id not in ref_position:
            ref_position[ref.ref_id] = len(records)
            records.append(ref)
        ref_index.append(ref_position[ref.ref_id])
        row_of_ref.setdefault(ref.ref_id, []).append(row)
    ref_rows = list(row_of_ref.values())
    if not sample_ids:
        raise ValueError(f"{table.name}/{table.split}: no samples to build a bank from")
    image_source = ImageRows(images, images.positions(image_rows))
    prior_maps = ProposalRows(priors, sample_ids, image_size, proposal)
    wrong = None if distractors is None else \
        ProposalRows(distractors, sample_ids, image_size, proposal)
    return SampleBank(
        sample_ids=sample_ids, phrases=phrases, images=image_source, priors=prior_maps,
        prior_grid=GridRows(prior_maps, grid_size),
        no_prior=np.asarray(priors.no_prior(sample_ids), dtype=bool),
        prior_score=np.clip(priors.scores[priors.rows(sample_ids)], 0.0, 1.0).astype(np.float32),
        ref_rows=ref_rows,
        masks=(MaskRows(records, np.array(ref_index, dtype=np.int64), image_size)
               if with_masks else None),
        distractors=wrong,
        objects=(ObjectRows(records, np.array(ref_index, dtype=np.int64), image_size, objects)
                 if objects else None))


class GroundTruthVault:
    """Ground-truth masks of unlabeled samples, for diagnostics and the ``oracle`` reward only.

    Nothing that trains the segmenter or computes a non-oracle reward receives this object.
    """

    def __init__(self, masks: RowSource | np.ndarray | None) -> None:
        self._masks = masks

    @property
    def available(self) -> bool:
        return self._masks is not None

    def take(self, rows: list[int] | np.ndarray) -> GroundTruthVault:
        """The vault of the listed rows (in that order), e.g. one rank's shard of the pool."""
        if self._masks is None:
            return GroundTruthVault(None)
        rows = np.asarray(rows, dtype=np.int64)
        masks = self._masks
        return GroundTruthVault(masks.take(rows) if isinstance(masks, RowSource) else masks[rows])

    def mask(self, row: int) -> np.ndarray:
        if self._masks is None:
            raise RuntimeError("ground-truth masks of the unlabeled pool are not available "
                               "(diagnostics=False): the oracle reward and diagnostics need them")
        return self._masks[row]
