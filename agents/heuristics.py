"""Heuristic label constructors: one per-cell rule on the observation's maps each, no learning.

All share :class:`CellRuleAgent`: a typed parameter dataclass, a vectorised ``rule`` over the
batched maps that returns the ``(B, G, G)`` choice codes of the ``construct`` action
(:data:`l2l_env.labels.CHOICES`: ignore, background, foreground, teacher), and JSON save/load of
the parameters. With ``action_form="select"`` the same rule speaks the selection form (1 wherever
the code is not ``ignore``), for the env's ``action="select"``.

================== ==========================================================================
name                constructs
================== ==========================================================================
none                nothing (supervised-only baseline)
all                 the teacher's label everywhere (naive self-training)
threshold           the teacher's label where it is confident: ``p > tau`` or ``p < 1 - tau``
                    (FixMatch)
prior               the MLLM prior's label everywhere (foreground where the proposal is above
                    0.5); nothing when the sample has no prior (its map is then flat 0.5) unless
                    ``skip_no_prior=False``
agreement           the label where prior and teacher agree and both are confident:
                    ``teacher > tau and prior > prior_tau`` or the same for background
fusion              the prior inside its box where the teacher agrees (foreground), nothing inside
                    the box where they disagree, the teacher's label outside the box
random              the teacher's label on each cell with probability ``p`` (seeded)
oracle-select       the teacher's label exactly where it is right (analysis only: reads the truth)
oracle-construct    the teacher's label where it is right, else the prior's where that is right,
                    else nothing (analysis only: reads the truth)
================== ==========================================================================

The oracles set ``needs_truth``: they run only in an env made with ``oracle_obs=True``, whose
``info["oracle"]`` then says so; experiments label them ``oracle-*`` in every table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.base import Agent, config_from, read_manifest, register, write_manifest
from agents.obs import Obs, as_batch, unbatch
from l2l_env.labels import ACTION_FORMS, BACKGROUND, FOREGROUND, IGNORE, TEACHER


@dataclass(frozen=True)
class NoParams:
    """A heuristic without parameters."""


@dataclass(frozen=True)
class ThresholdParams:
    """:param tau: teacher confidence threshold in ``[0.5, 1]``; a cell is selected when its
    teacher probability is strictly above ``tau`` or strictly below ``1 - tau``."""

    tau: float = 0.9

    def __post_init__(self) -> None:
        _check_unit("tau", self.tau, low=0.5)


@dataclass(frozen=True)
class PriorParams:
    """:param skip_no_prior: select nothing on samples whose MLLM gave no box (``no_prior`` = 1),
    whose prior map is a flat 0.5 that carries no label."""

    skip_no_prior: bool = True


@dataclass(frozen=True)
class AgreementParams:
    """:param tau: teacher confidence threshold in ``[0.5, 1]``.
    :param prior_tau: prior confidence threshold in ``[0.5, 1]`` (box proposals are about 1 inside
        the box and 0 outside, so the default keeps the box body and the far background)."""

    tau: float = 0.9
    prior_tau: float = 0.8

    def __post_init__(self) -> None:
        _check_unit("tau", self.tau, low=0.5)
        _check_unit("prior_tau", self.prior_tau, low=0.5)


@dataclass(frozen=True)
class RandomParams:
    """:param p: probability of selecting each cell. :param seed: seed of the agent's generator."""

    p: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_unit("p", self.p, low=0.0)


def _check_unit(key: str, value: float, low: float) -> None:
    if not (isinstance(value, (int, float)) and low <= float(value) <= 1.0):
        raise ValueError(f"heuristic parameter {key!r} must be a number in [{low}, 1], got {value!r}")


class CellRuleAgent(Agent):
    """A heuristic: a vectorised per-cell rule on the maps.

    Subclasses set ``Params`` (a frozen dataclass with defaults) and implement :meth:`rule`.
    Construct with the parameters as keywords (``make("threshold", tau=0.95)``) or ``params=``;
    ``action_form`` is ``"construct"`` (codes) or ``"select"`` (0/1).
    """

    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any | None = None, action_form: str = "construct",
                 **kwargs: Any) -> None:
        if action_form not in ACTION_FORMS:
            raise ValueError(f"agent {self.name!r}: action_form={action_form!r}; expected one of "
                             f"{ACTION_FORMS}")
        self.action_form = action_form
        self.params = config_from(self.Params, params, kwargs, f"agent {self.name!r}")

    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls.Params)} | {"params", "action_form"}

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        """``(B, G, G)`` choice codes from batched maps (``maps["teacher"]`` is ``(B, G, G)``;
        vector keys keep their ``(B, D)`` shape)."""
        raise NotImplementedError

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        batch, single = as_batch(obs)
        if self.needs_truth and "truth" not in batch:
            raise ValueError(f"agent {self.name!r} is an oracle: it needs the env's ground-truth "
                             "observation (make the env with oracle_obs=True)")
        maps = {k: (v[:, 0] if v.ndim == 4 and v.shape[1] == 1 else v) for k, v in batch.items()}
        codes = np.asarray(self.rule(maps)).astype(np.int8)
        b, g = maps["prior"].shape[0], maps["prior"].shape[-1]
        if codes.shape != (b, g, g):
            raise RuntimeError(f"{type(self).__name__}.rule returned shape {codes.shape}, "
                               f"expected {(b, g, g)}")
        if self.action_form == "select":
            codes = (codes != IGNORE).astype(np.int8)
        return unbatch(codes.reshape(b, g * g), single)

    def state(self) -> dict[str, Any]:
        """Extra state to save beside the parameters (JSON-serialisable)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def save(self, path: str | Path) -> Path:
        return write_manifest(path, self.name, params=dataclasses.asdict(self.params),
                              action_form=self.action_form, state=self.state())

    @classmethod
    def load(cls, path: str | Path) -> CellRuleAgent:
        data = read_manifest(path)
        if data["name"] != cls.name:
            raise ValueError(f"{Path(path)}: saved agent is {data['name']!r}, not {cls.name!r}")
        agent = cls(action_form=data.get("action_form", "construct"), **data.get("params", {}))
        agent.set_state(data.get("state", {}))
        return agent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _fill(maps: dict[str, np.ndarray], code: int) -> np.ndarray:
    return np.full(maps["prior"].shape, code, dtype=np.int8)


def _confident(p: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(confidently foreground, confidently background) masks of probability map ``p``."""
    return p > tau, p < 1.0 - tau


def _no_prior(maps: dict[str, np.ndarray]) -> np.ndarray:
    """``(B, 1, 1)`` bool: samples whose MLLM gave no box."""
    flag = maps.get("no_prior")
    b = maps["prior"].shape[0]
    return np.zeros((b, 1, 1), bool) if flag is None else flag.reshape(-1, 1, 1) > 0.5


def _prior_label(maps: dict[str, np.ndarray]) -> np.ndarray:
    """The prior's label per cell: foreground where the proposal is above 0.5."""
    return np.where(maps["prior"] > 0.5, FOREGROUND, BACKGROUND).astype(np.int8)


@register("none")
class NoneAgent(CellRuleAgent):
    """Labels nothing: the supervised-only baseline."""

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return _fill(maps, IGNORE)


@register("all")
class AllAgent(CellRuleAgent):
    """The teacher's label everywhere: naive self-training."""

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return _fill(maps, TEACHER)


@register("threshold")
class ThresholdAgent(CellRuleAgent):
    """The teacher's label where it is confident (FixMatch-style)."""

    Params = ThresholdParams

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        fg, bg = _confident(maps["teacher"], self.params.tau)
        return np.where(fg | bg, TEACHER, IGNORE).astype(np.int8)


@register("prior")
class PriorAgent(CellRuleAgent):
    """The MLLM prior's label everywhere (under ``select``: the env's ``label_source="prior"``)."""

    Params = PriorParams
    preferred_label_source = "prior"

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        codes = _prior_label(maps)
        if self.params.skip_no_prior:
            codes = np.where(_no_prior(maps), IGNORE, codes).astype(np.int8)
        return codes


@register("agreement")
class AgreementAgent(CellRuleAgent):
    """The label where prior and teacher agree and both are confident."""

    Params = AgreementParams

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        t_fg, t_bg = _confident(maps["teacher"], self.params.tau)
        p_fg, p_bg = _confident(maps["prior"], self.params.prior_tau)
        return np.select([t_fg & p_fg, t_bg & p_bg], [TEACHER, TEACHER], IGNORE).astype(np.int8)


@register("fusion")
class FusionAgent(CellRuleAgent):
    """The prior inside its box where the teacher agrees, the teacher's label outside the box."""

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        inside = (maps["prior"] > 0.5) & ~_no_prior(maps)
        agree = maps["teacher"] > 0.5
        return np.where(inside, np.where(agree, FOREGROUND, IGNORE), TEACHER).astype(np.int8)


@register("random")
class RandomAgent(CellRuleAgent):
    """The teacher's label on each cell independently with probability ``p``; its generator state
    is saved."""

    Params = RandomParams

    def __init__(self, params: RandomParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.rng = np.random.default_rng(self.params.seed)

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return np.where(self.rng.random(maps["prior"].shape) < self.params.p, TEACHER,
                        IGNORE).astype(np.int8)

    def state(self) -> dict[str, Any]:
        return {"bit_generator": json.loads(json.dumps(self.rng.bit_generator.state))}

    def set_state(self, state: dict[str, Any]) -> None:
        if "bit_generator" in state:
            self.rng.bit_generator.state = state["bit_generator"]


def _right(maps: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Where the label of ``key``'s map agrees with the ground-truth majority of the cell."""
    return (maps[key] > 0.5) == (maps["truth"] > 0.5)


@register("oracle-select")
class OracleSelectAgent(CellRuleAgent):
    """Analysis only: keeps exactly the cells where the teacher's label is right."""

    needs_truth = True

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return np.where(_right(maps, "teacher"), TEACHER, IGNORE).astype(np.int8)


@register("oracle-construct")
class OracleConstructAgent(CellRuleAgent):
    """Analysis only: the teacher's label where it is right, else the prior's where that is right
    (never on a sample without a prior), else nothing."""

    needs_truth = True

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        prior_ok = _right(maps, "prior") & ~_no_prior(maps)
        return np.select([_right(maps, "teacher"), prior_ok], [TEACHER, _prior_label(maps)],
                         IGNORE).astype(np.int8)
