"""The env's visit schedule: which loop row each global step acts on.

Unlabeled rows come in passes over the pool, each pass a fresh seeded order of the referred
objects with a seeded sentence per object. With ``calibration_every = N`` every N-th step visits
a held-out labeled row instead, from seeded passes over the probe. Passes are drawn when a step
first needs them, so the schedule is a function of the two seeds and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class VisitSchedule:
    """The loop rows of the global steps.

    :param unlabeled_rows: per referred object of the pool, the loop rows of its sentences.
    :param probe_rows: the same for the held-out probe, as loop rows (after the pool's).
    :param calibration_every: N: every N-th step is a probe row (0: never).
    :param rng: draws the passes over the pool.
    :param calib_rng: draws the passes over the probe.
    """

    def __init__(self, unlabeled_rows: list[list[int]], probe_rows: list[list[int]],
                 calibration_every: int, rng: np.random.Generator,
                 calib_rng: np.random.Generator) -> None:
        self.unlabeled_rows, self.probe_rows = unlabeled_rows, probe_rows
        self.calibration_every = int(calibration_every)
        self.rng, self.calib_rng = rng, calib_rng
        self.rows = np.zeros(0, dtype=np.int64)
        """The pool rows drawn so far, in visiting order."""
        self.calib_rows = np.zeros(0, dtype=np.int64)
        """The probe rows drawn so far, in visiting order."""

    def slot(self, pos: int) -> tuple[bool, int]:
        """Where global step ``pos`` reads its row: ``(calibration step, index in its
        schedule)``."""
        n = self.calibration_every
        if n and pos % n == n - 1:
            return True, pos // n
        return False, (pos - (pos + 1) // n if n else pos)

    def row_at(self, pos: int) -> int:
        """The loop row of step ``pos``, drawing further passes as needed."""
        calibration, k = self.slot(pos)
        if calibration:
            while k >= len(self.calib_rows):
                self.calib_rows = _extend(self.calib_rows, self.probe_rows, self.calib_rng)
            return int(self.calib_rows[k])
        while k >= len(self.rows):
            self.rows = _extend(self.rows, self.unlabeled_rows, self.rng)
        return int(self.rows[k])

    def known_row(self, pos: int) -> int | None:
        """The loop row of step ``pos`` when it is already drawn (nothing is drawn)."""
        calibration, k = self.slot(pos)
        rows = self.calib_rows if calibration else self.rows
        return int(rows[k]) if k < len(rows) else None

    def state_dict(self) -> dict[str, Any]:
        """The RNG states and the rows drawn so far (copies)."""
        return {"rng": dict(self.rng.bit_generator.state), "schedule": self.rows.copy(),
                "calib_rng": dict(self.calib_rng.bit_generator.state),
                "calib_schedule": self.calib_rows.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.rows = np.asarray(state["schedule"], dtype=np.int64)
        self.calib_rng.bit_generator.state = state["calib_rng"]
        self.calib_rows = np.asarray(state["calib_schedule"], dtype=np.int64)


def _extend(schedule: np.ndarray, ref_rows: list[list[int]], rng: np.random.Generator
            ) -> np.ndarray:
    """``schedule`` plus one seeded pass over the referred objects (a seeded sentence each)."""
    order = rng.permutation(len(ref_rows))
    picks = [rows[int(rng.integers(len(rows)))] if len(rows) > 1 else rows[0]
             for rows in (ref_rows[i] for i in order)]
    return np.concatenate([schedule, np.asarray(picks, dtype=np.int64)])
