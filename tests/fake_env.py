"""A small stand-in for ``l2l/PseudoLabel-v0`` with the same spaces and a synthetic reward.

Each step draws a scene on a ``G x G`` grid: a hidden true rectangle (the referent), a prior box
(right, displaced onto a distractor, or missing), and a teacher probability map that is right
most of the time, unsure near the object's border, and *confidently wrong* on a distractor
rectangle (the overfit-teacher failure the design notes describe). No segmenter: the state
distribution is stationary.

Two action forms, like the real env's ``action``:

* ``select`` (default): ``MultiBinary(G*G)``; the label of a selected cell is ``label_source > 0.5``.
* ``construct``: ``MultiDiscrete([4] * G*G)`` of the codes of :data:`l2l_env.labels.CHOICES`
  (ignore, background, foreground, teacher: the cell's label is ``teacher > 0.5``).

The reward is the mean over cells of ``+1`` for a labeled cell with the right label and
``-wrong_cost`` for a wrong one, and ``info["cell_rewards"]`` is each cell's share. Under
``construct`` the env also says what every choice would have earned: ``info["cell_scores"]``
``(G*G, 4)`` and ``info["scored"] = True``, like the real env's ``heldout`` reward on its calibration
steps; with ``score_every = N > 1`` only every N-th step is scored (the others earn 0 and carry no
``cell_scores``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _rect(rng: np.random.Generator, g: int, lo: int, hi: int) -> tuple[int, int, int, int]:
    h, w = rng.integers(lo, hi + 1, size=2)
    y, x = rng.integers(0, g - h + 1), rng.integers(0, g - w + 1)
    return int(y), int(x), int(h), int(w)


def _mask(g: int, r: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = r
    m = np.zeros((g, g), bool)
    m[y:y + h, x:x + w] = True
    return m


class FakePseudoLabelEnv(gym.Env):
    """Same observation/action contract as the real env; see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, grid_size: int = 8, text_dim: int = 16, episode_steps: int = 32,
                 wrong_cost: float = 3.0, prior_wrong: float = 0.2, no_prior_rate: float = 0.1,
                 distractor_rate: float = 0.7, include_image: bool = False,
                 label_source: str = "teacher", action: str = "select", score_every: int = 1) -> None:
        if action not in ("select", "construct"):
            raise ValueError(f"action={action!r}; expected 'select' or 'construct'")
        if score_every < 1:
            raise ValueError(f"score_every={score_every}; expected a positive integer")
        g = grid_size
        self.action, self.score_every = action, score_every
        self.grid_size, self.text_dim, self.episode_steps = g, text_dim, episode_steps
        self.wrong_cost, self.prior_wrong, self.no_prior_rate = wrong_cost, prior_wrong, no_prior_rate
        self.distractor_rate, self.label_source = distractor_rate, _check_label_source(label_source)
        m = spaces.Box(0.0, 1.0, (1, g, g), np.float32)
        obs = {"prior": m, "student": m, "teacher": m, "uncertainty": m,
               "text": spaces.Box(-1.0, 1.0, (text_dim,), np.float32),
               "no_prior": spaces.Box(0.0, 1.0, (1,), np.float32),
               "progress": spaces.Box(0.0, 1.0, (1,), np.float32)}
        if include_image:
            obs["image"] = spaces.Box(0.0, 1.0, (3, g, g), np.float32)
        self.observation_space = spaces.Dict(obs)
        self.action_space = (spaces.MultiBinary(g * g) if action == "select"
                             else spaces.MultiDiscrete(np.full(g * g, 4, dtype=np.int64)))
        self._t = 0
        self._truth = np.zeros((g, g), bool)
        self._obs: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ scene
    def _scene(self) -> dict[str, np.ndarray]:
        rng, g = self.np_random, self.grid_size
        obj = _rect(rng, g, max(2, g // 4), max(2, g // 2))
        truth = _mask(g, obj)
        distractor = _mask(g, _rect(rng, g, max(1, g // 4), max(2, g // 3))) & ~truth
        no_prior = rng.random() < self.no_prior_rate
        if no_prior:
            prior = np.full((g, g), 0.5)
        else:
            box = obj if rng.random() >= self.prior_wrong else _rect(rng, g, max(2, g // 4), max(2, g // 2))
            y, x, h, w = box
            prior = _mask(g, (max(0, y - 1), max(0, x - 1), h + 2, w + 2)) * 0.9 + 0.05
            prior = np.clip(prior + rng.normal(0, 0.02, (g, g)), 0, 1)
        # teacher: right with confidence that falls near the border, confidently wrong on the distractor
        border = truth ^ _mask(g, (obj[0] + 1, obj[1] + 1, max(obj[2] - 2, 0), max(obj[3] - 2, 0)))
        strength = np.where(border, 0.5, 3.0) + rng.normal(0, 1.0, (g, g))
        logit = np.where(truth, 1.0, -1.0) * strength
        if rng.random() < self.distractor_rate:
            logit = np.where(distractor, 3.0 + rng.normal(0, 0.5, (g, g)), logit)
        teacher = 1.0 / (1.0 + np.exp(-logit))
        student = np.clip(teacher + rng.normal(0, 0.1, (g, g)), 0, 1)
        ent = -(teacher * np.log(teacher + 1e-6) + (1 - teacher) * np.log(1 - teacher + 1e-6)) / np.log(2)
        text = rng.normal(size=self.text_dim)
        self._truth = truth
        obs = {"prior": prior, "student": student, "teacher": teacher, "uncertainty": np.clip(ent, 0, 1)}
        out = {k: v[None].astype(np.float32) for k, v in obs.items()}
        out["text"] = (text / np.linalg.norm(text)).astype(np.float32)
        out["no_prior"] = np.array([float(no_prior)], np.float32)
        out["progress"] = np.array([self._t / self.episode_steps], np.float32)
        if "image" in self.observation_space.spaces:
            out["image"] = np.repeat(truth[None].astype(np.float32) * 0.5 + 0.25, 3, axis=0)
        return out

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self._scene()
        return self._obs, {}

    def step(self, action):
        a = np.asarray(action)
        g2 = self.grid_size ** 2
        if a.shape != (g2,):
            raise ValueError(f"action shape {a.shape} is wrong; expected ({g2},)")
        fg_true = self._truth.ravel()
        teacher_label = (self._obs["teacher"][0] > 0.5).ravel()
        if self.action == "select":
            if not np.isin(a, (0, 1)).all():
                raise ValueError("action values must be exactly 0 or 1")
            sel = a.astype(bool)
            label = (self._obs[self.label_source][0] > 0.5).ravel()
        else:
            if not np.isin(a, (0, 1, 2, 3)).all():
                raise ValueError("action values must be codes 0..3")
            sel = a != 0
            label = np.select([a == 1, a == 2], [False, True], teacher_label)

        def pays(right: np.ndarray) -> np.ndarray:
            return np.where(right, 1.0, -self.wrong_cost) / g2

        correct = label == fg_true
        cell = np.where(sel, pays(correct), 0.0)
        scored = self.action == "construct" and self._t % self.score_every == self.score_every - 1
        if self.action == "construct" and not scored:
            cell = np.zeros(g2)
        reward = float(cell.sum())
        n_sel = int(sel.sum())
        info = {
            "coverage": n_sel / g2,
            "reward_components": {"correct": float((sel & correct).sum() / g2),
                                  "wrong": float((sel & ~correct).sum() / g2)},
            "cell_rewards": cell.astype(np.float32),
            "pl_precision": float((sel & correct).sum() / n_sel) if n_sel else float("nan"),
            "pl_recall": float((sel & label & fg_true).sum() / max(fg_true.sum(), 1)),
            "updated": False,
            "segmenter": {},
        }
        if self.action == "construct":
            info["scored"] = bool(scored)
            if scored:
                info["cell_scores"] = np.stack([np.zeros(g2), pays(~fg_true), pays(fg_true),
                                                pays(teacher_label == fg_true)], 1).astype(np.float32)
        self._t += 1
        truncated = self._t >= self.episode_steps
        self._obs = self._scene()
        return self._obs, reward, False, truncated, info


def _check_label_source(source: str) -> str:
    if source not in ("teacher", "prior", "student"):
        raise ValueError(f"label_source={source!r}; expected 'teacher', 'prior' or 'student'")
    return source
