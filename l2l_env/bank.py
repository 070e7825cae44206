"""In-memory arrays of the samples an environment works on, prepared once.

A :class:`SampleBank` holds, for every sentence of a set of referred objects, the image resized to
the segmenter's input size, the soft prior proposal at that size and at the action grid, the
no-prior flag and the phrase. Ground-truth masks are held only when asked for: the labeled bank
needs them as training targets; for the unlabeled bank they are kept apart, in a
:class:`GroundTruthVault`, which only diagnostics and the ``oracle`` reward may open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from l2l_env.data.types import RefSplit, RefTable
from segmenter.data import resize_images, resize_masks


def pool_to_grid(maps: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool (N, H, W) maps to (N, grid, grid) float32."""
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(t, grid)[:, 0].numpy()


def upsample_grid(cells: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upsampling of (N, G, G) cell values to (N, size, size) float32."""
    t = torch.from_numpy(np.ascontiguousarray(cells, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(size, size), mode="nearest")[:, 0].numpy()


@dataclass
class SampleBank:
    """Arrays over the sentences of a set of referred objects (row = one sentence)."""

    sample_ids: list[str]
    phrases: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8
    priors: np.ndarray  # (N, S, S) float32 soft proposal at input size
    prior_grid: np.ndarray  # (N, G, G) float32
    no_prior: np.ndarray  # (N,) bool
    ref_rows: list[list[int]]  # rows of each referred object's sentences
    masks: np.ndarray | None = None  # (N, S, S) bool, only when built with masks
    distractors: np.ndarray | None = None
    """(N, S, S) float32: a soft box on another object of the same image (a simulated grounding
    error, for training the segmenter to distrust a wrong prior), when built with distractors."""

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
                          self.images[idx], self.priors[idx], self.prior_grid[idx],
                          self.no_prior[idx], ref_rows,
                          None if self.masks is None else self.masks[idx],
                          None if self.distractors is None else self.distractors[idx])


def concat_banks(first: SampleBank, second: SampleBank) -> SampleBank:
    """The rows of ``first`` then those of ``second`` (masks dropped unless both have them)."""
    n = len(first)
    masks = (np.concatenate([first.masks, second.masks])
             if first.masks is not None and second.masks is not None else None)
    return SampleBank(first.sample_ids + second.sample_ids, first.phrases + second.phrases,
                      np.concatenate([first.images, second.images]),
                      np.concatenate([first.priors, second.priors]),
                      np.concatenate([first.prior_grid, second.prior_grid]),
                      np.concatenate([first.no_prior, second.no_prior]),
                      first.ref_rows + [[r + n for r in g] for g in second.ref_rows], masks)


def build_bank(table: RefTable, priors, image_size: int, grid_size: int, *,
               proposal: str = "box", with_masks: bool = True,
               distractor_seed: int | None = None) -> SampleBank:
    """Prepare every sentence of ``table``: images, proposals from ``priors`` (a PriorTable), masks.

    Images are loaded once per image id; masks are decoded only when ``with_masks`` is true. With
    a ``distractor_seed``, each sentence also gets a distractor prior (see
    :attr:`SampleBank.distractors`): the box of a random other object of its image, jittered by 5%
    of its size, drawn with that seed (a flat no-prior map when the image has no other object).
    """
    split = RefSplit(table, "per_sentence")
    sample_ids, phrases, image_rows, ref_rows, mask_list = [], [], [], [], []
    image_cache: dict[int, int] = {}
    images: list[np.ndarray] = []
    image_sizes: list[tuple[int, int]] = []
    row_of_ref: dict[int, list[int]] = {}
    rng = np.random.default_rng([distractor_seed or 0, 11])
    distractor_boxes: list[np.ndarray] = []
    for i in range(len(split)):
        ref, pos = split.record(i)
        sent_id, text = ref.sentences[pos]
        if ref.image_id not in image_cache:
            image_cache[ref.image_id] = len(images)
            image = table.load_image(ref.image_id)
            image_sizes.append(image.shape[:2])
            images.append(resize_images(image[None], image_size)[0])
        if distractor_seed is not None:
            others = [o.box for k, o in enumerate(ref.objects) if k != ref.referent]
            box = np.full(4, np.nan)
            if others:
                box = np.asarray(others[int(rng.integers(len(others)))], float)
                box = box + rng.normal(0.0, 0.05, 4) * box[[2, 3, 2, 3]]
            distractor_boxes.append(box)
        row = len(sample_ids)
        sample_ids.append(f"{ref.ref_id}:{sent_id}")
        phrases.append(text)
        image_rows.append(image_cache[ref.image_id])
        row_of_ref.setdefault(ref.ref_id, []).append(row)
        if with_masks:
            if pos == 0 or not mask_list:
                mask = resize_masks(ref.load_mask()[None], image_size)[0]
            mask_list.append(mask)
    ref_rows = list(row_of_ref.values())
    if not sample_ids:
        raise ValueError(f"{table.name}/{table.split}: no samples to build a bank from")
    image_array = np.stack(images)[np.array(image_rows)]
    prior_maps = priors.proposals(sample_ids, image_size, image_size, kind=proposal)
    prior_maps = np.clip(np.asarray(prior_maps, dtype=np.float32), 0.0, 1.0)
    distractors = None
    if distractor_seed is not None:
        from l2l_env.priors import proposal_maps

        sizes = np.asarray(image_sizes, float)[np.array(image_rows)]
        distractors = np.clip(proposal_maps(np.stack(distractor_boxes), image_size, image_size, "box",
                                            image_sizes=sizes), 0.0, 1.0).astype(np.float32)
    return SampleBank(
        sample_ids=sample_ids, phrases=phrases, images=image_array, priors=prior_maps,
        prior_grid=pool_to_grid(prior_maps, grid_size),
        no_prior=np.asarray(priors.no_prior(sample_ids), dtype=bool),
        ref_rows=ref_rows, masks=np.stack(mask_list) if with_masks else None,
        distractors=distractors)


class GroundTruthVault:
    """Ground-truth masks of unlabeled samples, for diagnostics and the ``oracle`` reward only.

    Nothing that trains the segmenter or computes a non-oracle reward receives this object.
    """

    def __init__(self, masks: np.ndarray | None) -> None:
        self._masks = masks

    @property
    def available(self) -> bool:
        return self._masks is not None

    def take(self, rows: list[int] | np.ndarray) -> GroundTruthVault:
        """The vault of the listed rows (in that order), e.g. one rank's shard of the pool."""
        return GroundTruthVault(None if self._masks is None else self._masks[np.asarray(rows)])

    def mask(self, row: int) -> np.ndarray:
        if self._masks is None:
            raise RuntimeError("ground-truth masks of the unlabeled pool are not available "
                               "(diagnostics=False): the oracle reward and diagnostics need them")
        return self._masks[row]
