"""Rewards of the pseudo-label environment, chosen by name.

Every reward sees a :class:`StepContext`: the agent's cell selection and choices, the label value
of every cell, and the maps of the state (prior, student, teacher) at the action grid. Only a
reward whose class sets ``uses_ground_truth = True`` (the ``oracle``, for analysis) is handed the
ground truth of unlabeled samples; the environment passes ``truth=None`` to every other reward, so
no other reward can read an unlabeled sample's mask. ``heldout_truth`` is the mask of a held-out
*labeled* sample on calibration steps (labeled ground truth) and None on every unlabeled step.

* ``heldout`` (default) - on calibration steps, each cell's constructed label scored against the
  held-out labeled mask (:func:`l2l_env.labels.choice_scores`: right pixels pay, wrong ones cost
  ``wrong_cost``, ignoring is 0); it also reports the score every other choice would have had
  (``choice_scores``), so a learner can take the policy gradient over all choices. Unlabeled steps
  score 0; an optional ``utility_weight`` adds the delayed probe utility.
* ``agreement`` - each selected cell earns the weighted agreement of prior, teacher and student
  with the cell's label, minus a margin, plus a small coverage bonus: reliable cells pay, contested
  cells cost (the paper's reward from multimodal priors and model predictions).
* ``utility`` - delayed: after each segmenter update, the change of the student's mIoU on a
  held-out labeled probe, credited on the step that triggered the update.
* ``hybrid`` - a weighted sum of both (the reward of the published selection ablation).
* ``oracle`` - IoU of the selected foreground cells against the ground-truth mask; analysis only.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l2l_env.labels import choice_scores, iou_choice_scores


@dataclass
class StepContext:
    """What a reward may look at for one step (all arrays flat over the G*G grid)."""

    selection: np.ndarray  # bool
    labels: np.ndarray  # float32 in {0, 1}: the label value each cell would get
    prior: np.ndarray
    student: np.ndarray
    teacher: np.ndarray
    no_prior: bool
    codes: np.ndarray | None = None  # int8 choice per cell (l2l_env.labels.CHOICES)
    teacher_full: np.ndarray | None = None  # (S, S) teacher probability map
    heldout_truth: np.ndarray | None = None  # (S, S) mask of a held-out LABELED sample, else None
    truth: Callable[[], np.ndarray] | None = None  # ground-truth foreground fraction per cell
    extras: dict[str, Any] = field(default_factory=dict)
    """What the reward asked for by :attr:`Reward.needs`, beyond the fields above (see
    :data:`STEP_EXTRAS`)."""


STEP_EXTRAS: tuple[str, ...] = ("image", "phrase", "sample_id", "prior_full", "student_full",
                                "label_full", "weight_full", "calibration")
"""What a reward may ask the env for beyond :class:`StepContext`'s fields (``Reward.needs``):
the image (S, S, 3) uint8, the phrase, the sample id, the prior and student maps (S, S), the
constructed label and its weight (S, S), and whether the step is a held-out calibration step.
None of them is unlabeled ground truth."""


@dataclass
class RewardResult:
    value: float
    components: dict[str, float] = field(default_factory=dict)
    cell_rewards: np.ndarray | None = None
    choice_scores: np.ndarray | None = None  # (G*G, choices): each choice's reward share, if known


class Reward(abc.ABC):
    """A reward: an immediate part per step, and an optional delayed part per segmenter update."""

    name: str = ""
    uses_ground_truth: bool = False
    needs: tuple[str, ...] = ()
    """Names from :data:`STEP_EXTRAS` the env puts into ``ctx.extras`` for this reward."""

    @abc.abstractmethod
    def step(self, ctx: StepContext) -> RewardResult:
        """The immediate reward of one selection."""

    def on_update(self, probe_delta: float) -> float:
        """The delayed reward credited when the segmenter has trained (default: none)."""
        return 0.0


REWARDS: dict[str, type[Reward]] = {}


def register_reward(name: str):
    """Class decorator: make a reward available by ``name``."""
    def wrap(cls: type[Reward]) -> type[Reward]:
        cls.name = name
        REWARDS[name] = cls
        return cls
    return wrap


def make_reward(name: str, **options) -> Reward:
    """Build a reward by name; unknown names and options are errors that list the valid ones."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known rewards: {sorted(REWARDS)}")
    try:
        reward = REWARDS[name](**options)
    except TypeError as err:
        raise ValueError(f"bad reward_options for reward {name!r}: {err}") from None
    unknown = sorted(set(reward.needs) - set(STEP_EXTRAS))
    if unknown:
        raise ValueError(f"reward {name!r} needs {unknown}, which the env cannot give; it gives "
                         f"{list(STEP_EXTRAS)}")
    return reward


def _support(source: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How strongly a probability map supports each cell's label (p for label 1, 1-p for 0)."""
    return np.where(labels > 0.5, source, 1.0 - source)


@register_reward("agreement")
class AgreementReward(Reward):
    """Agreement and confidence of prior, teacher and student with the selected labels.

    :param prior_weight, teacher_weight, student_weight: weights of each source's support.
    :param margin: support below which a selected cell costs instead of paying.
    :param coverage_bonus: added per selected cell, so that equal reliability favours coverage.
    """

    def __init__(self, prior_weight: float = 1.0, teacher_weight: float = 1.0,
                 student_weight: float = 0.5, margin: float = 0.75, coverage_bonus: float = 0.05,
                 scale: float = 1.0) -> None:
        self.weights = (prior_weight, teacher_weight, student_weight)
        self.margin, self.coverage_bonus, self.scale = margin, coverage_bonus, scale

    def reliability(self, ctx: StepContext) -> np.ndarray:
        wp, wt, ws = self.weights
        if ctx.no_prior:
            wp = 0.0  # a flat prior says nothing; do not let it vote
        total = wp * _support(ctx.prior, ctx.labels) + wt * _support(ctx.teacher, ctx.labels) \
            + ws * _support(ctx.student, ctx.labels)
        return total / max(wp + wt + ws, 1e-8)

    def step(self, ctx: StepContext) -> RewardResult:
        rel = self.reliability(ctx)
        n = ctx.selection.size
        cells = np.where(ctx.selection, (rel - self.margin + self.coverage_bonus) * self.scale / n, 0.0)
        cells = cells.astype(np.float32)
        selected = int(ctx.selection.sum())
        return RewardResult(float(cells.sum(dtype=np.float64)),
                            {"agreement": float(rel[ctx.selection].mean()) if selected else 0.0,
                             "coverage": selected / n},
                            cells)


@register_reward("utility")
class UtilityReward(Reward):
    """Delayed utility: ``scale`` times the probe-mIoU change after each segmenter update."""

    def __init__(self, scale: float = 10.0) -> None:
        self.scale = scale

    def step(self, ctx: StepContext) -> RewardResult:
        return RewardResult(0.0, {}, np.zeros(ctx.selection.size, np.float32))

    def on_update(self, probe_delta: float) -> float:
        return self.scale * float(probe_delta)


@register_reward("hybrid")
class HybridReward(Reward):
    """``agreement_weight * agreement + utility_weight * utility``."""

    def __init__(self, agreement_weight: float = 1.0, utility_weight: float = 1.0,
                 agreement: dict | None = None, utility: dict | None = None) -> None:
        self.agreement = AgreementReward(**(agreement or {}))
        self.utility = UtilityReward(**(utility or {}))
        self.agreement_weight, self.utility_weight = agreement_weight, utility_weight

    def step(self, ctx: StepContext) -> RewardResult:
        res = self.agreement.step(ctx)
        cells = res.cell_rewards * np.float32(self.agreement_weight)
        return RewardResult(self.agreement_weight * res.value, res.components, cells)

    def on_update(self, probe_delta: float) -> float:
        return self.utility_weight * self.utility.on_update(probe_delta)


@register_reward("heldout")
class HeldoutReward(Reward):
    """Exact per-cell scores of the constructed label on held-out labeled samples.

    :param wrong_cost: cost of a wrong pixel relative to the gain of a right one (a label pays
        only where it is right with probability above ``wrong_cost / (1 + wrong_cost)``).
    :param fg_weight: weight of ground-truth foreground pixels (the referent is small).
    :param utility_weight: weight of the delayed probe-mIoU utility on update steps (0: none).
    :param objective: ``weighted`` (the pixel scores above) or ``iou`` (scores whose optimum is
        the label of best IoU: :func:`l2l_env.labels.iou_choice_scores`).
    """

    OBJECTIVES = ("weighted", "iou")

    def __init__(self, wrong_cost: float = 2.0, fg_weight: float = 4.0, utility_weight: float = 0.0,
                 utility: dict | None = None, objective: str = "weighted") -> None:
        if wrong_cost < 0 or fg_weight <= 0:
            raise ValueError(f"heldout reward: wrong_cost must be >= 0 and fg_weight > 0, "
                             f"got {wrong_cost}, {fg_weight}")
        if objective not in self.OBJECTIVES:
            raise ValueError(f"heldout reward: objective={objective!r}; expected one of "
                             f"{self.OBJECTIVES}")
        self.objective = objective
        self.wrong_cost, self.fg_weight = float(wrong_cost), float(fg_weight)
        self.utility_weight = utility_weight
        self.utility = UtilityReward(**(utility or {}))

    def step(self, ctx: StepContext) -> RewardResult:
        n = ctx.selection.size
        if ctx.heldout_truth is None:  # an unlabeled sample: nothing to score honestly
            return RewardResult(0.0, {}, np.zeros(n, np.float32))
        if ctx.codes is None or ctx.teacher_full is None:
            raise RuntimeError("the heldout reward needs the cell choices and the teacher map")
        grid = int(round(math.sqrt(n)))
        if self.objective == "iou":
            scores = iou_choice_scores(ctx.teacher_full, ctx.heldout_truth, grid)
        else:
            scores = choice_scores(ctx.teacher_full, ctx.heldout_truth, grid,
                                   wrong_cost=self.wrong_cost, fg_weight=self.fg_weight)
        scores = scores / np.float32(n)
        cells = scores[np.arange(n), ctx.codes.astype(np.int64)]
        best = scores.max(axis=1).sum(dtype=np.float64)
        return RewardResult(float(cells.sum(dtype=np.float64)),
                            {"heldout": float(cells.sum(dtype=np.float64)),
                             "heldout_best": float(best)}, cells.astype(np.float32), scores)

    def on_update(self, probe_delta: float) -> float:
        return self.utility_weight * self.utility.on_update(probe_delta)


@register_reward("oracle")
class OracleReward(Reward):
    """IoU of the selected foreground cells with the ground-truth foreground cells.

    For analysis only: it reads ground truth of unlabeled samples, which no experiment may use to
    learn unless it asks for this reward by name; ``info["oracle"]`` is then True.
    """

    uses_ground_truth = True

    def step(self, ctx: StepContext) -> RewardResult:
        if ctx.truth is None:
            raise RuntimeError("the oracle reward needs ground-truth masks (diagnostics=True)")
        truth = ctx.truth() > 0.5
        chosen_fg = ctx.selection & (ctx.labels > 0.5)
        union = np.count_nonzero(chosen_fg | truth)
        value = np.count_nonzero(chosen_fg & truth) / union if union else 0.0
        correct = (ctx.labels > 0.5) == truth
        cells = np.where(ctx.selection, np.where(correct, 1.0, -1.0) / ctx.selection.size, 0.0)
        return RewardResult(float(value), {"oracle_iou": float(value)}, cells.astype(np.float32))
