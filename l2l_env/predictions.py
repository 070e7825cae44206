"""The env's predictions: the student's and the teacher's maps of the samples the loop visits,
computed one window at a time (every step until the next segmenter update, in one batch), with
the next window's inputs prepared ahead by a loader worker while this window is predicted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from l2l_env.bank import SampleBank, pool_to_grid
from l2l_env.schedule import VisitSchedule
from segmenter.engine import Segmenter
from segmenter.shared.loader import BatchLoader


@dataclass(frozen=True)
class Prediction:
    """One step's predictions: full-size maps ``(S, S)``, their grid pools ``(G, G)`` and the
    phrase embedding ``(D,)``."""

    student_full: np.ndarray
    teacher_full: np.ndarray
    student_grid: np.ndarray
    teacher_grid: np.ndarray
    text: np.ndarray


def text_embeddings(segmenter: Segmenter, phrases: list[str]) -> np.ndarray:
    """The L2-normalised mean of each phrase's token features, in [-1, 1] ``(N, D)``."""
    tokens, mask = segmenter.text_features(phrases)
    tokens, mask = tokens.detach().float().cpu(), mask.detach().cpu().float()
    pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
    pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return pooled.clamp(-1.0, 1.0).numpy().astype(np.float32)


class PredictionWindow:
    """The predictions of the current window of ``update_interval`` steps.

    :param segmenter: the coupled segmenter (its student and EMA teacher predict).
    :param bank: the loop bank the schedule's rows index.
    :param grid_size: G, the action grid.
    :param update_interval: steps per window (the segmenter updates at its end).
    :param num_workers: > 0: one worker prepares the next window's inputs ahead.
    """

    def __init__(self, segmenter: Segmenter, bank: SampleBank, *, grid_size: int,
                 update_interval: int, num_workers: int) -> None:
        self.segmenter, self.bank = segmenter, bank
        self.grid_size, self.update_interval = int(grid_size), int(update_interval)
        self.num_workers = int(num_workers)
        self.cache: dict[int, Prediction] = {}
        self.loader: BatchLoader | None = None  # its workers start on first use
        self.ahead: tuple[np.ndarray, Iterator[dict[str, Any]]] | None = None

    def clear(self) -> None:
        """Forget the window (its predictions are stale after a segmenter update)."""
        self.cache.clear()

    def restart(self) -> None:
        """Forget the window and the inputs prepared ahead (start of a run)."""
        self.cache = {}
        self.ahead = None

    def at(self, pos: int, schedule: VisitSchedule) -> Prediction:
        """The predictions of global step ``pos``, computing its whole window when needed."""
        if pos not in self.cache:
            self.cache.clear()
            k = self.update_interval
            end = (pos // k + 1) * k
            positions = list(range(pos, end))
            rows = np.array([schedule.row_at(p) for p in positions])
            inputs = self.inputs(rows, end, schedule)
            images, priors, phrases = inputs["images"], inputs["priors"], inputs["phrases"]
            student = self.segmenter.predict(images, priors, phrases, teacher=False)
            teacher = self.segmenter.predict(images, priors, phrases, teacher=True)
            text = text_embeddings(self.segmenter, phrases)
            student_grid = pool_to_grid(student, self.grid_size)
            teacher_grid = pool_to_grid(teacher, self.grid_size)
            for i, p in enumerate(positions):
                self.cache[p] = Prediction(student[i], teacher[i], student_grid[i],
                                           teacher_grid[i], text[i])
        return self.cache[pos]

    def inputs(self, rows: np.ndarray, end: int, schedule: VisitSchedule) -> dict[str, Any]:
        """Images, priors and phrases of the loop rows of one window, from the input loader:
        prepared ahead (by a worker, while this window is predicted) when the next window's
        rows are already scheduled."""
        if self.loader is None:
            self.loader = BatchLoader(_WindowInputs(self.bank),
                                      num_workers=min(1, self.num_workers),
                                      pin_memory=self.segmenter.device.type == "cuda"
                                      and self.num_workers > 0)
        ahead, self.ahead = self.ahead, None
        inputs = None
        if ahead is not None and np.array_equal(ahead[0], rows):
            inputs = next(ahead[1])
        if inputs is None:
            inputs = next(self.loader.batches([rows]))
        following = [schedule.known_row(p) for p in range(end, end + self.update_interval)]
        if all(r is not None for r in following):
            nxt = np.array(following, dtype=np.int64)
            self.ahead = (nxt, self.loader.batches([nxt]))
        return inputs


class _WindowInputs:
    """The prediction inputs of a window of loop rows: ``{"images", "priors", "phrases"}``."""

    def __init__(self, bank: SampleBank) -> None:
        self.bank = bank

    def __call__(self, rows: np.ndarray) -> dict[str, Any]:
        bank = self.bank
        return {"images": bank.images[rows], "priors": bank.priors[rows],
                "phrases": [bank.phrases[r] for r in rows]}
