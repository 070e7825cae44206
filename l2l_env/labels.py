"""Pseudo-label construction: what an action makes of a sample's label, cell by cell.

Two action forms (``EnvConfig.action``):

* ``construct`` (default): ``MultiDiscrete([4] * G*G)``; per cell one of the :data:`CHOICES`
  ``ignore`` (no label: the loss skips its pixels), ``background``, ``foreground`` (the whole cell
  gets that label) or ``teacher`` (the cell keeps the teacher's own pixel labels). The agent thus
  decides the label itself and can overrule the teacher with the prior or the opposite.
* ``select``: ``MultiBinary(G*G)``, the published selection ablation: 1 keeps the cell with the
  label of ``label_source`` (teacher, prior or their fusion), 0 ignores it.

Both forms end in the same :class:`ConstructedLabel`: per-cell codes and full-resolution label
and weight maps. :func:`choice_scores` is the exact per-cell score of every choice against a mask,
which the ``heldout`` reward uses on held-out *labeled* samples only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

CHOICES: tuple[str, ...] = ("ignore", "background", "foreground", "teacher")
"""The per-cell choices of the ``construct`` action, by code."""
IGNORE, BACKGROUND, FOREGROUND, TEACHER = range(len(CHOICES))
ACTION_FORMS = ("construct", "select")
"""The env's action forms (``EnvConfig.action``): per-cell construction or selection."""


def action_space(form: str, grid: int) -> spaces.MultiDiscrete | spaces.MultiBinary:
    """The env's action space of action form ``form`` on a ``grid x grid`` grid: what an agent
    must act in, known from the config alone (no env needed)."""
    if form == "construct":
        return spaces.MultiDiscrete(np.full(grid * grid, len(CHOICES), dtype=np.int64))
    if form == "select":
        return spaces.MultiBinary(grid * grid)
    raise ValueError(f"action form {form!r} is unknown; expected one of {ACTION_FORMS}")


def action_form(space: spaces.Space) -> str | None:
    """The action form whose space ``space`` is (the inverse of :func:`action_space`), or
    ``None`` for another space (e.g. a wrapper's)."""
    if isinstance(space, spaces.MultiDiscrete) and np.all(space.nvec == len(CHOICES)):
        return "construct"
    if isinstance(space, spaces.MultiBinary):
        return "select"
    return None


def upsample_cells(cells: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each cell of ``(..., G, G)`` into a ``scale x scale`` block: ``(..., G*s, G*s)``."""
    return np.repeat(np.repeat(cells, scale, axis=-2), scale, axis=-1)


def cell_fraction(pixels: np.ndarray, grid: int) -> np.ndarray:
    """Mean of ``(S, S)`` (or ``(N, S, S)``) pixel values over each cell of a ``grid x grid`` grid."""
    s = pixels.shape[-1] // grid
    shape = pixels.shape[:-2] + (grid, s, grid, s)
    return pixels.reshape(shape).mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


@dataclass
class ConstructedLabel:
    """The pseudo-label an action built for one sample.

    :ivar codes: ``(G, G)`` int8 choice per cell (:data:`CHOICES`; ``select`` actions map to
        ``ignore`` or the code of the label source's value).
    :ivar label: ``(S, S)`` float32 in {0, 1}: the label value of every pixel (0 where ignored).
    :ivar weight: ``(S, S)`` float32 in {0, 1}: 1 where the pixel is labeled.
    :ivar cell_label: ``(G, G)`` float32: the labeled cells' foreground fraction (0 where ignored).
    """

    codes: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    cell_label: np.ndarray

    @property
    def selected(self) -> np.ndarray:
        """``(G, G)`` bool: the cells that carry a label."""
        return self.codes != IGNORE


def construct(codes: np.ndarray, teacher_full: np.ndarray) -> ConstructedLabel:
    """The label of ``codes`` (``(G, G)`` choices) given the teacher's probability map ``(S, S)``."""
    g = codes.shape[-1]
    scale = teacher_full.shape[-1] // g
    up = upsample_cells(codes, scale)
    teacher_label = teacher_full > 0.5
    label = np.where(up == TEACHER, teacher_label, up == FOREGROUND).astype(np.float32)
    weight = (up != IGNORE).astype(np.float32)
    return ConstructedLabel(codes.astype(np.int8), label * weight, weight,
                            cell_fraction(label * weight, g))


def select_codes(selection: np.ndarray, source_full: np.ndarray, source: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, label_full)`` of a ``select`` action: the selected cells keep the pixel labels of
    ``source_full`` (its map thresholded at 0.5). Codes say ``teacher`` where the source is the
    teacher, else the cell's majority label."""
    g = selection.shape[-1]
    label = (source_full > 0.5).astype(np.float32)
    if source == "teacher":
        codes = np.where(selection, TEACHER, IGNORE)
    else:
        majority = cell_fraction(label, g) > 0.5
        codes = np.where(selection, np.where(majority, FOREGROUND, BACKGROUND), IGNORE)
    return codes.astype(np.int8), label


def from_selection(selection: np.ndarray, source_full: np.ndarray, source: str) -> ConstructedLabel:
    """The :class:`ConstructedLabel` of a ``select`` action (``selection`` ``(G, G)`` bool)."""
    g = selection.shape[-1]
    codes, label = select_codes(selection, source_full, source)
    weight = upsample_cells(selection.astype(np.float32), source_full.shape[-1] // g)
    return ConstructedLabel(codes, label * weight, weight, cell_fraction(label * weight, g))


def choice_scores(teacher_full: np.ndarray, truth: np.ndarray, grid: int, *,
                  wrong_cost: float = 2.0, fg_weight: float = 4.0) -> np.ndarray:
    """``(G*G, 4)`` float32: the score of each choice in each cell against a ground-truth mask.

    A labeled pixel scores ``+w`` when its label is right and ``-wrong_cost * w`` when it is
    wrong, with ``w = fg_weight`` on ground-truth foreground pixels and 1 elsewhere; a cell's score
    is the mean over its pixels; ``ignore`` scores 0. A choice pays only where it is right with
    probability above ``wrong_cost / (1 + wrong_cost)``, so labelling everything is not optimal.
    """
    gt = truth.astype(bool)
    w = np.where(gt, np.float32(fg_weight), np.float32(1.0))
    fg_gain = w * np.where(gt, 1.0, -wrong_cost)  # labelling the pixel foreground
    bg_gain = w * np.where(gt, -wrong_cost, 1.0)  # labelling it background
    return cell_scores(fg_gain, bg_gain, teacher_full > 0.5, grid)


def cell_scores(fg_gain: np.ndarray, bg_gain: np.ndarray, teacher_fg: np.ndarray,
                grid: int) -> np.ndarray:
    """``(G*G, 4)`` float32 choice scores from per-pixel gains ``(S, S)`` of labelling each pixel
    foreground or background: a cell's score is the mean gain over its pixels of the labels the
    choice gives them (``teacher``: the teacher's own label per pixel); ``ignore`` scores 0."""
    out = np.zeros((grid * grid, len(CHOICES)), np.float32)
    out[:, BACKGROUND] = cell_fraction(bg_gain, grid).ravel()
    out[:, FOREGROUND] = cell_fraction(fg_gain, grid).ravel()
    out[:, TEACHER] = cell_fraction(np.where(teacher_fg, fg_gain, bg_gain), grid).ravel()
    return out


def iou_choice_scores(teacher_full: np.ndarray, truth: np.ndarray, grid: int, *,
                      tau: float | None = None, bg_weight: float = 0.1,
                      bg_cost: float = 9.0) -> np.ndarray:
    """``(G*G, 4)`` float32: per-cell scores whose sum is maximised by the label of best IoU.

    The IoU of a label, ``TP / (|truth| + FP)``, is maximal where ``TP - tau * FP`` is, with
    ``tau`` the best IoU reachable (Dinkelbach); that sum splits over cells, so a cell's
    foreground pixels score ``+1`` when right and ``-tau`` when wrong (a cell's score is the mean
    over its pixels, as in :func:`choice_scores`). A learner of the expected score thus labels a
    pixel foreground where ``P(fg) > tau / (1 + tau)``: liberally when no source is good, like a
    teacher thresholded near 0.5 when one is. ``tau`` defaults to the teacher's own IoU on this
    sample. Background does not change IoU; it earns ``bg_weight`` per right pixel and costs
    ``bg_weight * bg_cost`` per wrong one (so it pays where ``P(fg) < 1 / (1 + bg_cost)``), which
    keeps confident background labeled and uncertain cells ignored.
    """
    gt = truth.astype(bool)
    teacher_fg = teacher_full > 0.5
    if tau is None:
        union = np.count_nonzero(teacher_fg | gt)
        tau = np.count_nonzero(teacher_fg & gt) / union if union else 1.0
    fg_gain = np.where(gt, 1.0, -float(tau)).astype(np.float32)
    bg_gain = np.where(gt, -bg_weight * bg_cost, bg_weight).astype(np.float32)
    return cell_scores(fg_gain, bg_gain, teacher_fg, grid)
