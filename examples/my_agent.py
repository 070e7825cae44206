"""A custom agent in one file: label a cell only where the MLLM prior and the teacher agree.

Run it through the whole pipeline (train, loop, evaluation) from this folder::

    l2l-run --import my_agent --agent mine --config smoke --out runs/mine

or from the project root with ``--import examples.my_agent``. Its options come from the config
like any agent's (``agent_options.mine.margin=0.1``); ``action_form`` is set from the env's.

An agent is one class registered by name: :meth:`act` maps an observation (single, or batched
with a leading dimension) to the env's action, ``save``/``load`` write and read a folder. A
learner also implements ``learn`` (plus ``continue_from`` and ``counters`` for exact resume, and
optionally ``stepper`` to be stepped by a run's loop); see ``agents/base.py``. An agent that
acts in one action form only says so with ``action_spaces``, and a run refuses the other form
before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import agents
from agents.base import read_manifest, write_manifest
from agents.obs import Obs, as_batch, unbatch
from l2l_env.labels import BACKGROUND, FOREGROUND, IGNORE


@agents.register("mine")
class Mine(agents.Agent):
    """Foreground where prior and teacher are both above ``1 - margin``, background where both are
    below ``margin``, no label elsewhere (``select`` form: keep the cells they agree on).

    :param margin: how far from certain both maps may be, in ``(0, 0.5]``.
    :param action_form: the env's action form, ``construct`` or ``select``.
    """

    def __init__(self, margin: float = 0.2, action_form: str = "construct") -> None:
        if not 0.0 < margin <= 0.5:
            raise ValueError(f"agent 'mine': margin={margin!r}; expected a number in (0, 0.5]")
        self.margin, self.action_form = margin, action_form

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        batch, single = as_batch(obs)
        prior, teacher = batch["prior"][:, 0], batch["teacher"][:, 0]   # (B, G, G) each
        high, low = 1.0 - self.margin, self.margin
        codes = np.full(prior.shape, IGNORE, np.int8)
        codes[(prior > high) & (teacher > high)] = FOREGROUND
        codes[(prior < low) & (teacher < low)] = BACKGROUND
        if self.action_form == "select":
            codes = (codes != IGNORE).astype(np.int8)
        return unbatch(codes.reshape(len(codes), -1), single)

    def save(self, path: str | Path) -> Path:
        return write_manifest(path, self.name, margin=self.margin, action_form=self.action_form)

    @classmethod
    def load(cls, path: str | Path) -> Mine:
        data = read_manifest(path)
        return cls(margin=data["margin"], action_form=data["action_form"])
