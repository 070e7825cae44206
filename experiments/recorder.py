"""What the self-evolving loop did, step by step: a pass-through wrapper that records each step's
reward and ``info`` diagnostics, and the running pseudo-label statistics built from them.

The wrapper lets the runner see every step even when a learner (``l2l``, ``sb3:*``) steps the env
inside its own ``learn``; the statistics are plain numbers, saved in each checkpoint so a resumed
run reports the same summary as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from l2l_env import schema

PIXEL_KEYS = (schema.PL_SELECTED_PIXELS, schema.PL_CORRECT_PIXELS)
"""Pixel counts, pooled over the loop rather than averaged."""
STEP_KEYS = ("reward", schema.COVERAGE, schema.LABEL_FG_FRACTION) + tuple(
    k for k in schema.DIAGNOSTIC_SCALARS if k not in PIXEL_KEYS)
"""Per-step scalars averaged over the loop (the ``pl_*`` ones are diagnostics against ground truth,
on unlabeled steps only: see :data:`l2l_env.schema.DIAGNOSTIC_KEYS`)."""


class StepRecorder(gym.Wrapper):
    """Passes every call through; keeps the scalars of each step until :meth:`drain` and the last
    ``keep_actions`` constructions of unlabeled samples (the env's ``last_construction``: row,
    codes, label, weight, teacher map) for pictures."""

    def __init__(self, env: gym.Env, keep_actions: int = 4) -> None:
        super().__init__(env)
        self.steps: list[dict[str, float]] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=max(1, keep_actions))
        self.total_steps = 0
        self.on_step: Callable[[int], None] | None = None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        rec = {"reward": float(reward), schema.UPDATED: bool(info.get(schema.UPDATED, False))}
        for key in STEP_KEYS[1:] + PIXEL_KEYS:
            if key in info:
                rec[key] = float(info[key])
        seg = info.get(schema.SEGMENTER)
        if seg:
            for key in ("loss", "probe_mIoU", "probe_delta", "pseudo_samples"):
                if key in seg:
                    rec[f"seg_{key}"] = float(seg[key])
        for name, value in (info.get(schema.REWARD_COMPONENTS) or {}).items():
            rec[f"reward_{name}"] = float(value)
        self.steps.append(rec)
        built = getattr(self.env.unwrapped, "last_construction", None)
        if built is not None and not info.get(schema.CALIBRATION, False):
            self.recent.append({**built, "sample_id": str(info.get(schema.SAMPLE_ID, ""))})
        self.total_steps += 1
        if self.on_step is not None:
            self.on_step(self.total_steps)
        return obs, reward, terminated, truncated, info

    def drain(self) -> list[dict[str, float]]:
        """The records since the last drain (and forget them)."""
        out, self.steps = self.steps, []
        return out


@dataclass
class PseudoLabelStats:
    """Running sums over the loop's steps plus one curve point per window of steps."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    curves: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    updates: int = 0

    def add(self, records: list[dict[str, float]]) -> dict[str, float]:
        """Fold in a window of step records; returns (and appends to the curves) its means."""
        window: dict[str, list[float]] = {}
        for rec in records:
            for key, value in rec.items():
                if key == "updated" or not math.isfinite(value):
                    continue
                window.setdefault(key, []).append(value)
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1
            self.updates += int(rec.get("updated", False))
        self.steps += len(records)
        point = {"step": float(self.steps)}
        point.update({k: float(np.mean(v)) for k, v in sorted(window.items()) if k not in PIXEL_KEYS})
        sel = sum(window.get("pl_selected_pixels", []))
        if sel:
            point["pl_pixel_precision"] = float(sum(window.get("pl_correct_pixels", [])) / sel)
        if records:
            self.curves.append(point)
        return point

    def summary(self) -> dict[str, Any]:
        """Loop-wide means (``mean_reward``, ``coverage``, ``pl_precision`` ...), the pooled pixel
        precision, counts, and the per-window curves."""
        def mean(key: str) -> float | None:
            return self.sums[key] / self.counts[key] if self.counts.get(key) else None

        out: dict[str, Any] = {"steps": self.steps, "segmenter_updates": self.updates,
                               "mean_reward": mean("reward")}
        for key in STEP_KEYS[1:]:
            out[key] = mean(key)
        for key in ("seg_loss", "seg_probe_mIoU"):
            out[key] = mean(key)
        sel = self.sums.get("pl_selected_pixels", 0.0)
        out["pl_pixel_precision"] = (self.sums.get("pl_correct_pixels", 0.0) / sel) if sel else None
        out["selected_pixels"] = int(sel)
        out["curves"] = list(self.curves)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts),
                "curves": [dict(c) for c in self.curves], "steps": self.steps, "updates": self.updates}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PseudoLabelStats:
        return cls(sums=dict(state["sums"]), counts=dict(state["counts"]),
                   curves=[dict(c) for c in state["curves"]], steps=int(state["steps"]),
                   updates=int(state["updates"]))
