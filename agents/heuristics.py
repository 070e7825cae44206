"""Heuristic selectors: one per-cell rule on the observation's maps each, no learning.

All share :class:`CellRuleAgent`: a typed parameter dataclass, a vectorised ``rule`` over the
batched maps that returns a boolean ``(B, G, G)`` selection, and JSON save/load of the parameters.

========== =================================================================================
name        selects
========== =================================================================================
none        nothing (supervised-only baseline)
all         every cell (naive self-training on the teacher's labels)
threshold   cells where the teacher is confident: ``p > tau`` or ``p < 1 - tau`` (FixMatch)
prior       every cell, labelled by the MLLM prior (``preferred_label_source = "prior"``);
            nothing when the sample has no prior (its map is then flat 0.5) unless
            ``skip_no_prior=False``
agreement   cells where prior and teacher agree on the label and both are confident:
            ``teacher > tau and prior > prior_tau`` or ``teacher < 1 - tau and prior < 1 - prior_tau``
random      each cell independently with probability ``p`` (seeded)
========== =================================================================================
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.base import Agent, read_manifest, register, write_manifest
from agents.obs import Obs, as_batch, unbatch


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
    Construct with the parameters as keywords (``make("threshold", tau=0.95)``) or ``params=``.
    """

    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any | None = None, **kwargs: Any) -> None:
        if params is not None and kwargs:
            raise TypeError(f"{type(self).__name__}: pass params= or keywords, not both")
        if params is None:
            fields = {f.name for f in dataclasses.fields(self.Params)}
            unknown = sorted(set(kwargs) - fields)
            if unknown:
                raise TypeError(f"agent {self.name!r}: unknown parameter(s) {unknown}; "
                                f"expected some of {sorted(fields)}")
            params = self.Params(**kwargs)
        elif not isinstance(params, self.Params):
            raise TypeError(f"agent {self.name!r}: params must be {self.Params.__name__}, "
                            f"got {params!r}")
        self.params = params

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        """Boolean ``(B, G, G)`` selection from batched maps (``maps["teacher"]`` is ``(B, G, G)``;
        vector keys keep their ``(B, D)`` shape)."""
        raise NotImplementedError

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        batch, single = as_batch(obs)
        maps = {k: (v[:, 0] if v.ndim == 4 and v.shape[1] == 1 else v) for k, v in batch.items()}
        sel = np.asarray(self.rule(maps), dtype=bool)
        b, g = maps["prior"].shape[0], maps["prior"].shape[-1]
        if sel.shape != (b, g, g):
            raise RuntimeError(f"{type(self).__name__}.rule returned shape {sel.shape}, "
                               f"expected {(b, g, g)}")
        return unbatch(sel.reshape(b, g * g).astype(np.int8), single)

    def state(self) -> dict[str, Any]:
        """Extra state to save beside the parameters (JSON-serialisable)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def save(self, path: str | Path) -> Path:
        return write_manifest(path, self.name, params=dataclasses.asdict(self.params),
                              state=self.state())

    @classmethod
    def load(cls, path: str | Path) -> CellRuleAgent:
        data = read_manifest(path)
        if data["name"] != cls.name:
            raise ValueError(f"{Path(path)}: saved agent is {data['name']!r}, not {cls.name!r}")
        agent = cls(**data.get("params", {}))
        agent.set_state(data.get("state", {}))
        return agent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _fill(maps: dict[str, np.ndarray], value: bool) -> np.ndarray:
    return np.full(maps["prior"].shape, value, dtype=bool)


def _confident(p: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(confidently foreground, confidently background) masks of probability map ``p``."""
    return p > tau, p < 1.0 - tau


@register("none")
class NoneAgent(CellRuleAgent):
    """Selects nothing: the supervised-only baseline."""

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return _fill(maps, False)


@register("all")
class AllAgent(CellRuleAgent):
    """Selects every cell: naive self-training on the teacher's labels."""

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return _fill(maps, True)


@register("threshold")
class ThresholdAgent(CellRuleAgent):
    """Cells where the teacher is confident (FixMatch-style)."""

    Params = ThresholdParams

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        fg, bg = _confident(maps["teacher"], self.params.tau)
        return fg | bg


@register("prior")
class PriorAgent(CellRuleAgent):
    """Every cell, labelled by the MLLM prior: run the env with ``label_source="prior"``."""

    Params = PriorParams
    preferred_label_source = "prior"

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        sel = _fill(maps, True)
        if self.params.skip_no_prior and "no_prior" in maps:
            sel &= ~(maps["no_prior"].reshape(-1, 1, 1) > 0.5)
        return sel


@register("agreement")
class AgreementAgent(CellRuleAgent):
    """Cells where prior and teacher agree on the label and both are confident."""

    Params = AgreementParams

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        t_fg, t_bg = _confident(maps["teacher"], self.params.tau)
        p_fg, p_bg = _confident(maps["prior"], self.params.prior_tau)
        return (t_fg & p_fg) | (t_bg & p_bg)


@register("random")
class RandomAgent(CellRuleAgent):
    """Each cell independently with probability ``p``; its generator state is saved."""

    Params = RandomParams

    def __init__(self, params: RandomParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.rng = np.random.default_rng(self.params.seed)

    def rule(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        return self.rng.random(maps["prior"].shape) < self.params.p

    def state(self) -> dict[str, Any]:
        return {"bit_generator": json.loads(json.dumps(self.rng.bit_generator.state))}

    def set_state(self, state: dict[str, Any]) -> None:
        if "bit_generator" in state:
            self.rng.bit_generator.state = state["bit_generator"]
