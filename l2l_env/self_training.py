"""Self-training of the coupled segmenter on labeled data plus constructed pseudo-labels.

The env hands every constructed label of an unlabeled loop sample to :meth:`SelfTrainer.add`;
every ``update_interval`` steps it calls :meth:`SelfTrainer.update`, which trains the segmenter
for ``update_steps`` optimiser steps on the pending pseudo-labels plus a fresh labeled batch each
step, then scores the student on the held-out probe. Nothing here sees an unlabeled sample's
ground truth: the banks it is given hold none.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from l2l_env.bank import SampleBank
from l2l_env.metrics import iou
from segmenter.config import UNKNOWN_CLASS
from segmenter.shared.loader import BatchLoader
from segmenter.shared.rng import stream, swap_priors


class SelfTrainer:
    """The update step of the loop: pending pseudo-labels in, one segmenter update out.

    :param segmenter: the coupled :class:`segmenter.Segmenter` (trained in place).
    :param labeled: the labeled training bank (with masks).
    :param probe: held-out labeled samples (with masks): the utility reward's probe.
    :param pool: the bank the loop visits; pending rows index it.
    :param update_steps: optimiser steps per update.
    :param labeled_batch: labeled samples added to every step's batch.
    :param pseudo_weight: weight of a pseudo-labeled pixel relative to a labeled one.
    :param pseudo_prior_dropout: the chance that a pseudo-labeled sample trains without its prior
        (the flat no-answer map; seeded by the step), so that the pseudo-labels also teach the
        network to find the object from the phrase alone.
    :param num_workers: worker processes that assemble the update's batches (0: this process).
        The labeled batch indices are drawn here, in order, and every other draw is seeded by
        the segmenter step the batch trains, so the batches do not depend on it.
    """

    def __init__(self, segmenter: Any, labeled: SampleBank, probe: SampleBank, pool: SampleBank, *,
                 update_steps: int, labeled_batch: int, pseudo_weight: float,
                 num_workers: int = 0, pseudo_prior_dropout: float = 0.0) -> None:
        self.segmenter = segmenter
        self.labeled, self.probe, self.pool = labeled, probe, pool
        self.update_steps = int(update_steps)
        self.labeled_batch = int(labeled_batch)
        self.pseudo_weight = float(pseudo_weight)
        self.pseudo_prior_dropout = float(pseudo_prior_dropout)
        self.num_workers = int(num_workers)
        self._loader: Any = None
        self._probe_inputs: dict[str, Any] | None = None
        self.pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        """``(pool row, label (S, S), weight (S, S))`` of every label since the last update."""
        self.probe_miou: float | None = None

    def reset(self) -> None:
        """Forget the pending labels and the last probe score (start of a run)."""
        self.pending = []
        self.probe_miou = None

    def add(self, row: int, label: np.ndarray, weight: np.ndarray) -> None:
        """Queue the pseudo-label of pool row ``row`` for the next update."""
        self.pending.append((int(row), label, weight))

    def probe_score(self) -> float:
        """Mean IoU of the student on the probe (0 without a probe), on the probe's arrays that
        the update's loader assembled while it trained, else read now."""
        inputs, self._probe_inputs = self._probe_inputs, None
        if len(self.probe) == 0:
            return 0.0

        if inputs is None:
            inputs = _UpdateBatch(self.pool, self.labeled, 0.0, self.probe)(("probe",))
        probs = self.segmenter.predict(inputs["images"], inputs["priors"], inputs["phrases"])
        return float(iou(probs > 0.5, inputs["masks"]).mean())

    def update(self, rng: np.random.Generator) -> dict[str, float]:
        """Train on the pending labels (cleared) plus labeled batches drawn with ``rng``; returns
        ``{"loss", "pseudo_samples", "probe_mIoU", "probe_delta", "segmenter_step"}``."""
        if self.probe_miou is None:
            self.probe_miou = self.probe_score()
        S = int(self.segmenter.config.image_size)
        pending, self.pending = self.pending, []
        rows = np.array([p[0] for p in pending], dtype=np.int64)
        empty = np.zeros((0, S, S), np.float32)
        targets = np.stack([p[1] for p in pending]) if pending else empty
        weights = (np.stack([p[2] for p in pending]) if pending else empty) * np.float32(self.pseudo_weight)
        keep = weights.any(axis=(1, 2))
        rows, targets, weights = rows[keep], targets[keep], weights[keep]
        lab = self.labeled
        draws = []  # drawn as a step-by-step loop draws them (the batches need only these)
        for _ in range(self.update_steps):
            idx = rng.choice(len(lab), size=min(self.labeled_batch, len(lab)), replace=False)
            if len(rows) + len(idx) == 0:
                break
            draws.append(idx)
        step = int(self.segmenter.step)
        train_keys = [("labeled", idx, step + j) for j, idx in enumerate(draws)]
        keys = ([("pool", rows)] + train_keys if draws else []) + \
            ([("probe",)] if len(self.probe) else [])  # the probe is read while training runs
        batches = self.loader().batches(keys)
        losses = []
        if draws:
            pool = next(batches)
            for (_, idx, at), labeled in zip(train_keys, batches):
                if at != self.segmenter.step:
                    raise RuntimeError(f"update: batch of step {at} at step {self.segmenter.step}")
                images = np.concatenate([pool["images"], labeled["images"]])
                priors = np.concatenate([self.pseudo_priors(pool["priors"], at),
                                         labeled["priors"]])
                phrases = pool["phrases"] + labeled["phrases"]
                tgt = np.concatenate([targets, labeled["masks"].astype(np.float32)])
                ones = np.ones((len(idx),) + lab.masks.shape[1:], np.float32)
                wts = np.concatenate([weights, ones])
                extra = {}
                if labeled["objects"] is not None:  # pseudo-labeled rows: object classes unknown
                    unknown = np.full((len(rows),) + labeled["objects"].shape[1:], UNKNOWN_CLASS,
                                      dtype=labeled["objects"].dtype)
                    extra["objects"] = np.concatenate([unknown, labeled["objects"]])
                losses.append(self.segmenter.train_step(images, priors, phrases, tgt, wts,
                                                        **extra)["loss"])
        before = self.probe_miou
        self._probe_inputs = next(batches) if len(self.probe) else None
        self.probe_miou = self.probe_score()
        return {"loss": float(np.mean(losses)) if losses else 0.0,
                "pseudo_samples": int(len(rows)),
                "probe_mIoU": self.probe_miou,
                "probe_delta": self.probe_miou - before,
                "segmenter_step": int(self.segmenter.step)}

    def pseudo_priors(self, priors: np.ndarray, step: int) -> np.ndarray:
        """The pseudo-labeled samples' priors for training step ``step``: each dropped (the flat
        no-answer map) with chance ``pseudo_prior_dropout``."""
        if self.pseudo_prior_dropout <= 0 or len(priors) == 0:
            return priors
        drop = stream("pseudo_prior_dropout", step).random(len(priors)) < self.pseudo_prior_dropout
        flat = np.float32(self.segmenter.config.no_prior_value)
        return np.where(drop[:, None, None], flat, priors).astype(priors.dtype, copy=False)

    def loader(self) -> Any:
        """The batch loader of the updates (its workers start at the first update)."""
        if self._loader is None:
            cuda = self.segmenter.device.type == "cuda"
            self._loader = BatchLoader(
                _UpdateBatch(self.pool, self.labeled, float(self.segmenter.config.prior_swap),
                             self.probe),
                num_workers=self.num_workers, pin_memory=cuda and self.num_workers > 0)
        return self._loader

    def state_dict(self) -> dict[str, Any]:
        """The pending labels and the last probe score (copies)."""
        return {"pending": [(int(r), s.copy(), t.copy()) for r, s, t in self.pending],
                "probe_miou": self.probe_miou}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending = [(int(r), np.asarray(s), np.asarray(t)) for r, s, t in copy.deepcopy(state["pending"])]
        self.probe_miou = state["probe_miou"]


def _labeled_priors(lab: SampleBank, idx: np.ndarray, swap: float, step: int) -> np.ndarray:
    """The priors of labeled rows ``idx`` for the training step ``step``: with ``swap`` > 0 and a
    labeled bank built with distractors, each is replaced by its distractor with that probability
    (seeded by the step: exact on resume)."""
    if swap <= 0 or lab.distractors is None or len(idx) == 0:
        return lab.priors[idx]
    return swap_priors(lab.priors[idx], lab.distractors[idx], swap,
                       stream("update_prior_swap", step))


class _UpdateBatch:
    """The parts of an update's batches, by key: ``("pool", rows)`` the pending rows' images,
    priors and phrases; ``("labeled", idx, step)`` the labeled rows' images, priors (with the
    step's distractor swap), phrases, masks and object targets (None without them);
    ``("probe",)`` every probe row's."""

    def __init__(self, pool: SampleBank, labeled: SampleBank, prior_swap: float,
                 probe: SampleBank) -> None:
        self.pool, self.labeled, self.prior_swap, self.probe = pool, labeled, prior_swap, probe

    def __call__(self, key: tuple) -> dict[str, Any]:
        if key[0] == "probe":
            probe = self.probe
            return {"images": probe.images[:], "priors": probe.priors[:],
                    "phrases": list(probe.phrases), "masks": probe.masks[:]}
        if key[0] == "pool":
            rows = key[1]
            bank = self.pool
            return {"images": bank.images[rows], "priors": bank.priors[rows],
                    "phrases": [bank.phrases[r] for r in rows]}
        _, idx, step = key
        lab = self.labeled
        priors = _labeled_priors(lab, idx, self.prior_swap, step)
        return {"images": lab.images[idx], "priors": priors,
                "phrases": [lab.phrases[i] for i in idx], "masks": lab.masks[idx],
                "objects": None if lab.objects is None else lab.objects[idx]}
