"""Other action forms of the pseudo-label environment, as gymnasium ``ActionWrapper``s.

* :class:`CellWeightsAction` - ``Box(-1, 1, (G*G,))``: a cell is selected when its weight is > 0.
  This is the continuous relaxation that Box-only algorithms (SAC, TD3, DDPG) need.
* :class:`ThresholdAction` - ``Box(0, 1, (2,))``: ``(fg_threshold, bg_threshold)``: select the
  cells whose label-source probability is >= ``fg_threshold`` or <= ``bg_threshold``; a two-number
  action for agents that need a small space.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _cells(env: gym.Env) -> int:
    space = env.action_space
    if not isinstance(space, spaces.MultiBinary) or len(space.shape) != 1:
        raise TypeError(f"expected an env with a flat MultiBinary action space, got {space}")
    return int(space.shape[0])


class CellWeightsAction(gym.ActionWrapper):
    """Per-cell weights in [-1, 1]; cells with a positive weight are selected."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Box(-1.0, 1.0, (_cells(env),), np.float32)

    def action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"weights shape {a.shape} is wrong; expected {self.action_space.shape}")
        if not np.isfinite(a).all():
            raise ValueError("weights contain NaN or infinite values")
        return (a > 0).astype(np.int8)


class ThresholdAction(gym.ActionWrapper):
    """Two confidence thresholds on the label source (teacher by default) choose the cells."""

    def __init__(self, env: gym.Env, source: str = "teacher") -> None:
        super().__init__(env)
        _cells(env)
        if source not in ("teacher", "student", "prior"):
            raise ValueError(f"source={source!r}; expected 'teacher', 'student' or 'prior'")
        self.source = source
        self.action_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self._last_obs: dict | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def action(self, action) -> np.ndarray:
        if self._last_obs is None:
            raise RuntimeError("ThresholdAction: call reset() before step()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"threshold action must be 2 finite numbers (fg, bg), got {action!r}")
        fg, bg = np.clip(a, 0.0, 1.0)
        probs = np.asarray(self._last_obs[self.source], dtype=np.float64).ravel()
        return ((probs >= fg) | (probs <= bg)).astype(np.int8)
