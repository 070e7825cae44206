"""How the L2L constructor learns: the whole update rule in one file.

Policy. The network (:mod:`agents.l2l.policy`) gives ``K`` logits per grid cell; each cell's
choice is an independent categorical draw ``a_c ~ Cat(softmax(l_c))`` (``construct``: K = 4,
ignore / background / foreground / teacher; ``select``: K = 2, skip / keep).
``log pi(a_c) = log_softmax(l_c)[a_c]``.

Rollout. ``n_steps`` env steps per update (per env of a vector env). Each step stores the
observation, the action, the per-cell log-probabilities, the value ``V(s_t)``, the scalar reward
``r_t``, ``info["cell_rewards"]`` (each cell's share of ``r_t``) when the env gives it, and
``info["cell_scores"]`` (``(C, K)``: the reward share *every* choice of each cell would have
earned) on the steps the env scores (``info["scored"]``). Episodes are only ever truncated: a
truncated step bootstraps ``r_t += gamma * V(s_final)``.

Two learning signals, weighted by ``pg_coef`` and ``all_action_coef``:

1. All-action policy improvement (the default of ``construct``). Where the env scores every
   choice of a cell (``s_{t,c,k} = C * cell_scores``), the reward of every action is known, so no
   sampled action is needed: the policy is moved toward the Boltzmann policy of the scores,
   ``L_aa = mean_{t,c} CE(softmax(s_{t,c} / temperature), pi(. | s_t, c))`` (a policy-iteration
   step with exact action values; the plain expected-score gradient
   ``grad sum_k pi_k s_k`` vanishes once the policy saturates on the majority choice, which we
   measured: it then never learns the minority cells). Because this objective does not depend on
   the policy that acted, scored steps are kept in a replay window (``replay``). The agent acts
   greedily (``explore = False``): no exploration noise ever enters the segmenter's training.
   Steps without scores contribute nothing to ``L_aa``.
2. Clipped PPO on sampled actions (``explore = True``; the ``select`` ablation and rewards that
   score only the taken action, such as ``agreement`` or the delayed ``utility``):
   * scalar advantages by GAE over the per-step reward,
     ``delta_t = r_t + gamma V(s_{t+1}) (1 - done_t) - V(s_t)``,
     ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``; value target ``R_t = A_t + V(s_t)``;
   * per-cell advantages from ``info["cell_rewards"]``: ``y_{t,c} = C * cell_rewards_{t,c}`` minus
     the per-cell baseline ``b_c(s_t)`` of the network's cell-value head (a shared baseline would
     push unselected bad cells toward selection whenever the mean reward is positive);
   * mixed: each part standardised over the batch, ``A_{t,c} = (1 - k) A_t + k A^cell_{t,c}``
     with ``k = cell_adv_coef``;
   * each cell's ratio clipped on its own (one joint ratio over 1,024 cells explodes):
     ``rho_{t,c} = exp(log pi_new(a_{t,c}) - log pi_old(a_{t,c}))``,
     ``L_pg = mean_{t,c} max(-A_{t,c} rho_{t,c}, -A_{t,c} clip(rho_{t,c}, 1 - eps, 1 + eps))``,
     plus ``vf_coef * 0.5 [(V - R)^2 + mean_c (b_c - y_c)^2]``.

``L = pg_coef L_pg + all_action_coef L_aa - ent_coef mean_{t,c} H(pi(. | s_t, c))``, gradient
norm clipped to ``max_grad_norm``; optional early stop when the mean per-cell KL estimate
exceeds ``target_kl``.

Every update appends a record (mean reward, coverage, pseudo-label precision from ``info``,
losses, KL, clip fraction) to the history list, calls ``callback(agent, record)`` and writes the
record to an optional TensorBoard ``SummaryWriter``. The learner never reads ``pl_*`` values
for learning: they are ground-truth diagnostics, only copied into the record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, VectorEnv

from agents.l2l.policy import SelectorNet
from agents.obs import as_batch
from l2l_env import schema
from segmenter.shared.settings import Runtime


@dataclass
class L2LConfig(Runtime):
    """Hyper-parameters of the L2L selector and its PPO update (saved with the agent)."""

    # --- rollout and returns
    n_steps: int = 64
    """Env steps per update (per sub-env of a vector env)."""
    gamma: float = 0.9
    """Discount over env steps (later samples feel a selection only through segmenter updates)."""
    gae_lambda: float = 0.9
    # --- advantages
    cell_adv_coef: float = 0.5
    """Weight ``k`` of the per-cell advantage from ``info["cell_rewards"]`` (0: scalar only)."""
    norm_adv: bool = True
    # --- learning signals (see the module docstring)
    action_form: str = "construct"
    """``construct`` (K = 4 choices per cell) or ``select`` (K = 2): the env's ``action``."""
    explore: bool = False
    """Sample actions (needed by the PPO term); False acts greedily (all-action term only)."""
    pg_coef: float = 0.0
    """Weight of the clipped PPO term (needs ``explore``)."""
    all_action_coef: float = 1.0
    """Weight of the all-action policy improvement on scored steps."""
    temperature: float = 0.1
    """Temperature of the all-action target ``softmax(scores / temperature)`` (score units: a
    right pixel scores 1)."""
    replay: int = 256
    """Scored steps kept for the all-action term across updates (0: this rollout's only). The
    all-action objective does not depend on the policy that acted, so earlier scored states stay
    valid training data; a bounded window keeps them recent."""
    # --- PPO update
    learning_rate: float = 1e-3
    n_epochs: int = 4
    minibatch_size: int = 32
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    # --- network (agents.l2l.policy.SelectorNet)
    hidden: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    cond_hidden: int = 64
    coord: bool = True
    init_select_prob: float = 0.5
    """``select``: initial keep probability of every cell."""
    init_teacher_prob: float = 0.7
    """``construct``: initial probability of the ``teacher`` choice (the rest shared equally), so
    that the untrained constructor starts close to naive self-training."""
    # --- run: ``seed`` and ``device`` (``Runtime``; here also ``"auto"``: cuda when available)

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        checks = {"n_steps": self.n_steps >= 1, "n_epochs": self.n_epochs >= 1,
                  "minibatch_size": self.minibatch_size >= 1, "gamma": 0.0 <= self.gamma <= 1.0,
                  "gae_lambda": 0.0 <= self.gae_lambda <= 1.0,
                  "cell_adv_coef": 0.0 <= self.cell_adv_coef <= 1.0,
                  "clip_coef": self.clip_coef > 0.0, "learning_rate": self.learning_rate > 0.0,
                  "dilations": len(self.dilations) >= 1 and min(self.dilations) >= 1,
                  "action_form": self.action_form in ("construct", "select"),
                  "pg_coef": self.pg_coef >= 0.0 and (self.pg_coef == 0.0 or self.explore),
                  "all_action_coef": self.all_action_coef >= 0.0,
                  "init_select_prob": 0.0 < self.init_select_prob < 1.0,
                  "init_teacher_prob": 0.0 < self.init_teacher_prob < 1.0}
        if self.action_form == "select" and not (self.explore and self.pg_coef > 0.0):
            raise ValueError("L2LConfig(action_form='select'): the select form has no choice scores "
                             "to learn from; it learns by PPO: set explore=True and pg_coef > 0")
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"L2LConfig: invalid value for {bad}: "
                             f"{ {k: getattr(self, k) for k in bad} }")


    @property
    def n_choices(self) -> int:
        return 4 if self.action_form == "construct" else 2

    @property
    def init_probs(self) -> tuple[float, ...]:
        """Initial choice probabilities of every cell (the head's bias)."""
        if self.action_form == "select":
            return (1.0 - self.init_select_prob, self.init_select_prob)
        rest = (1.0 - self.init_teacher_prob) / 3.0
        return (rest, rest, rest, self.init_teacher_prob)


# ----------------------------------------------------------------------------- distributions

def categorical_logp(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Per-cell ``log pi(a_c)`` of Cat(softmax(logits)): ``logits (..., C, K)``, ``actions
    (..., C)`` -> ``(..., C)``."""
    return F.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-cell entropy (nats) of Cat(softmax(logits)), ``(..., C)``."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def sample_choices(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One categorical draw per cell, ``(B, C)`` int64, from ``logits (B, C, K)``."""
    b, c, k = logits.shape
    probs = torch.softmax(logits, dim=-1).reshape(b * c, k)
    return torch.multinomial(probs, 1, generator=gen).reshape(b, c)


def all_action_loss(logits: torch.Tensor, scores: torch.Tensor, scored: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """Policy improvement with known choice scores: the cross-entropy of the policy to the
    Boltzmann policy of the scores, ``-mean over scored steps and cells of
    sum_k q_k log pi(k)`` with ``q = softmax(s / temperature)``. Its minimiser is the soft-greedy
    policy of the scores (the greedy one as ``temperature -> 0``); unlike the expected score
    ``sum_k pi_k s_k`` it does not stop learning where the policy has saturated on the majority
    choice. ``logits (M, C, K)``, ``scores (M, C, K)``, ``scored (M,)`` 0/1."""
    target = torch.softmax(scores / max(temperature, 1e-6), dim=-1)
    cross = -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean(dim=1)
    return (cross * scored).sum() / scored.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------- advantages

def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
                gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``(advantages, returns)``, each ``(T, N)``, by GAE.

    :param rewards: ``(T, N)`` rewards (truncation bootstrap already added).
    :param values: ``(T, N)`` ``V(s_t)``.
    :param dones: ``(T, N)`` 1 where step ``t`` ended its episode (no bootstrap from ``s_{t+1}``).
    :param last_values: ``(N,)`` ``V`` of the observation after the last step.
    """
    t_len = len(rewards)
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1], dtype=np.float64)
    for t in reversed(range(t_len)):
        next_v = last_values if t == t_len - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv.astype(np.float32), (adv + values).astype(np.float32)


def _standardise(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` with statistics over entries whose broadcast weight is 1."""
    w = np.broadcast_to(weights, x.shape)
    n = max(float(w.sum()), 1.0)
    mean = float((x * w).sum() / n)
    std = math.sqrt(float((((x - mean) ** 2) * w).sum() / n))
    return (x - mean) / (std + 1e-8)


def mix_advantages(adv: np.ndarray, cell_adv: np.ndarray | None, valid: np.ndarray,
                   coef: float, normalise: bool) -> np.ndarray:
    """Per-cell advantages ``(T, N, C)`` (or ``(T, N, 1)`` with no cell part) from the scalar
    ``adv (T, N)`` and the per-cell ``cell_adv (T, N, C)``; ``valid (T, N)`` marks steps that count
    (vector-env autoreset steps do not)."""
    scalar = (_standardise(adv, valid) if normalise else adv)[..., None]
    if cell_adv is None or coef == 0.0:
        return scalar.astype(np.float32)
    cell = _standardise(cell_adv, valid[..., None]) if normalise else cell_adv
    return ((1.0 - coef) * scalar + coef * cell).astype(np.float32)


# ----------------------------------------------------------------------------- loss

def ppo_loss(logits: torch.Tensor, values: torch.Tensor, cell_values: torch.Tensor,
             actions: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, returns: torch.Tensor,
             cell_targets: torch.Tensor | None, weights: torch.Tensor, cfg: L2LConfig
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped per-cell PPO loss of one minibatch (see the module docstring).

    Shapes: ``logits`` is ``(M, C, K)``; ``cell_values, actions, old_logp, cell_targets`` are
    ``(M, C)``; ``adv`` is
    ``(M, C)`` or ``(M, 1)``; ``values, returns, weights`` are ``(M,)``.
    """
    w = weights / weights.sum().clamp_min(1.0)
    new_logp = categorical_logp(logits, actions)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef))
    pg_loss = (pg.mean(dim=1) * w).sum()
    entropy = (categorical_entropy(logits).mean(dim=1) * w).sum()
    v_loss = 0.5 * (((values - returns) ** 2) * w).sum()
    if cell_targets is not None:
        v_loss = v_loss + 0.5 * (((cell_values - cell_targets) ** 2).mean(dim=1) * w).sum()
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    with torch.no_grad():
        approx_kl = ((((ratio - 1.0) - log_ratio).mean(dim=1)) * w).sum()
        clip_frac = ((((ratio - 1.0).abs() > cfg.clip_coef).float().mean(dim=1)) * w).sum()
    return loss, {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "entropy": entropy.item(),
                  "approx_kl": approx_kl.item(), "clip_frac": clip_frac.item()}


# ----------------------------------------------------------------------------- env driving

def _info_array(info: dict[str, Any], key: str, n: int, vector: bool
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values (n, ...), present (n,))`` of ``info[key]`` for a single or vector env;
    None if absent."""
    if key not in info:
        return None
    if not vector:
        return np.asarray(info[key], dtype=np.float32)[None], np.ones(1, bool)
    present = np.asarray(info.get("_" + key, np.ones(n, bool)), dtype=bool)
    vals = info[key]
    if isinstance(vals, np.ndarray) and vals.dtype != object:
        return vals.astype(np.float32), present
    filled = [np.asarray(v, np.float32) if p else None for v, p in zip(vals, present)]
    shape = next((v.shape for v in filled if v is not None), ())
    return np.stack([v if v is not None else np.zeros(shape, np.float32) for v in filled]), present


INFO_KEYS: tuple[str, ...] = (schema.CELL_REWARDS, schema.CELL_SCORES, schema.SCORED,
                              schema.COVERAGE, schema.PL_PRECISION)
"""The ``info`` fields the learner reads (``pl_precision`` only into its records)."""


@dataclass
class RolloutState:
    """What carries over between learners (``learn`` calls) on the same env."""

    env: Any = None
    obs: dict[str, np.ndarray] | None = None
    reset_next: np.ndarray | None = None
    """(N,) True where the next vector-env step is an autoreset step (NEXT_STEP mode)."""
    env_steps: int = 0
    updates: int = 0
    replay_obs: dict[str, np.ndarray] | None = None
    """The scored steps of the all-action replay window: observations ``(M, ...)``..."""
    replay_scores: np.ndarray | None = None
    """... and the scores of every choice ``(M, C, K)`` (times C)."""

    def remember(self, obs: dict[str, np.ndarray], scores: np.ndarray, limit: int) -> None:
        """Append scored steps and keep the latest ``limit``."""
        if self.replay_obs is None or self.replay_scores is None:
            self.replay_obs, self.replay_scores = {k: v[:0] for k, v in obs.items()}, scores[:0]
        self.replay_obs = {k: np.concatenate([self.replay_obs[k], obs[k]])[-limit:] for k in obs}
        self.replay_scores = np.concatenate([self.replay_scores, scores])[-limit:]


class EnvDriver:
    """Turns a single gymnasium env's or a vector env's step results into batched ``(N, ...)``
    arrays, and keeps the observation to act on next (resetting ended episodes)."""

    def __init__(self, env: Any, state: RolloutState, seed: int) -> None:
        self.env = env
        self.vector = isinstance(env, VectorEnv)
        self.n = env.num_envs if self.vector else 1
        self.mode = (AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
                     if self.vector else None)
        self.state = state
        if state.env is not env or state.obs is None:
            obs, _ = env.reset(seed=seed)
            state.env, state.obs = env, as_batch(obs)[0]
            state.reset_next = np.zeros(self.n, bool)

    @property
    def obs(self) -> dict[str, np.ndarray]:
        assert self.state.obs is not None
        return self.state.obs

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        """The env's action for the batched ``actions (N, C)``."""
        return actions if self.vector else actions[0]

    def record(self, obs: Any, reward: Any, terminated: Any, truncated: Any, info: dict[str, Any],
               value_fn: Callable[[dict[str, np.ndarray]], np.ndarray], gamma: float
               ) -> dict[str, Any]:
        """The env's answer to the last action: rewards (with truncation bootstrap), dones, a
        validity mask, and the :data:`INFO_KEYS` fields; resets ended episodes."""
        valid = ~self.state.reset_next if self.mode == AutoresetMode.NEXT_STEP else np.ones(self.n, bool)
        reward = np.asarray(reward, np.float64).reshape(self.n).copy()
        term = np.asarray(terminated, bool).reshape(self.n)
        trunc = np.asarray(truncated, bool).reshape(self.n) & ~term
        done = term | trunc
        next_obs = as_batch(obs)[0]
        final_obs = next_obs
        if self.vector and self.mode == AutoresetMode.SAME_STEP and done.any():
            final_obs = {k: v.copy() for k, v in next_obs.items()}
            for i in np.flatnonzero(done):
                for k in final_obs:
                    final_obs[k][i] = info["final_obs"][i][k]
        raw_reward = reward.copy()
        if trunc.any():
            reward[trunc] += gamma * value_fn(final_obs)[trunc]
        if not self.vector and done[0]:
            next_obs = as_batch(self.env.reset()[0])[0]
        elif self.vector and self.mode == AutoresetMode.DISABLED and done.any():
            next_obs = as_batch(self.env.reset(options={"reset_mask": done})[0])[0]
        next_step_mode = self.mode == AutoresetMode.NEXT_STEP
        self.state.reset_next = done & valid if next_step_mode else np.zeros(self.n, bool)
        self.state.obs = next_obs
        out: dict[str, Any] = {"reward": reward, "raw_reward": raw_reward, "done": done, "valid": valid}
        for key in INFO_KEYS:
            out[key] = _info_array(info, key, self.n, self.vector)
        return out


# ----------------------------------------------------------------------------- the rollout

@dataclass
class Rollout:
    """One rollout's ``T`` steps of ``N`` sub-envs as ``(T, N, ...)`` arrays."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    """int8 ``(T, N, C)``: the choices taken."""
    logp: np.ndarray
    """``(T, N, C)``: their log-probabilities under the acting policy."""
    values: np.ndarray
    """``V(s_t)`` ``(T, N)``, float64."""
    cell_values: np.ndarray
    """The cell baselines ``b_c(s_t)`` ``(T, N, C)``, float64."""
    rewards: np.ndarray
    """``r_t`` ``(T, N)`` with the truncation bootstrap."""
    raw_rewards: np.ndarray
    """``r_t`` as the env gave it."""
    dones: np.ndarray
    """1.0 where the step ended its episode."""
    valid: np.ndarray
    """True where the step counts (vector-env autoreset steps do not)."""
    cell_rewards: np.ndarray | None
    """``info["cell_rewards"]`` ``(T, N, C)`` (0 where absent); None unless every step gave it."""
    scores: np.ndarray
    """``info["cell_scores"]`` ``(T, N, C, K)`` on scored steps, 0 elsewhere."""
    scored: np.ndarray
    """True on the valid steps whose every choice the env scored."""
    coverage: np.ndarray
    """``info["coverage"]`` ``(T, N)``, NaN where absent."""
    pl_precision: np.ndarray
    """``info["pl_precision"]``, NaN where absent (a diagnostic: records only)."""


@dataclass
class RolloutBuffer:
    """The steps of the rollout being collected: :meth:`add` one, :meth:`arrays` stacks them."""

    n_choices: int
    """``K``: scores of another action form's choices (construct's, under select) are dropped."""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, obs: dict[str, np.ndarray], actions: np.ndarray, logp: np.ndarray,
            value: np.ndarray, cell_value: np.ndarray, step: dict[str, Any]) -> None:
        """One step of every sub-env: what the policy saw and did, and the driver's ``step``
        (:meth:`EnvDriver.record`)."""
        n = len(actions)
        cr = step[schema.CELL_REWARDS]
        cs, flag = step[schema.CELL_SCORES], step[schema.SCORED]
        if cs is not None and cs[0].shape[-1] != self.n_choices:
            cs = None
        is_scored = step["valid"].copy()
        if cs is None:
            is_scored[:] = False
        else:
            is_scored &= cs[1] & ((flag[1] & (flag[0].reshape(n) > 0.5)) if flag is not None
                                  else True)
        shape = (n,) + tuple(cell_value.shape[1:]) + (self.n_choices,)
        diagnostics = {}
        for key in (schema.COVERAGE, schema.PL_PRECISION):
            got = step[key]
            diagnostics[key] = (np.where(got[1], got[0].reshape(n), np.nan) if got is not None
                                else np.full(n, np.nan))
        self.steps.append({
            "obs": obs, "actions": actions, "logp": logp, "values": value,
            "cell_values": cell_value, "rewards": step["reward"],
            "raw_rewards": step["raw_reward"], "dones": step["done"].astype(np.float64),
            "valid": step["valid"],
            "cell_rewards": None if cr is None else np.where(cr[1][:, None], cr[0], 0.0),
            "scores": (np.zeros(shape, np.float32) if cs is None
                       else np.where(is_scored[:, None, None], cs[0], 0.0).astype(np.float32)),
            "scored": is_scored, **diagnostics})

    def arrays(self) -> Rollout:
        """The steps stacked to ``(T, N, ...)``."""
        cols = {k: [s[k] for s in self.steps] for k in self.steps[0] if k != "obs"}
        obs = {k: np.stack([s["obs"][k] for s in self.steps]) for k in self.steps[0]["obs"]}
        return Rollout(obs=obs, **{k: None if any(v is None for v in vs) else np.stack(vs)
                                   for k, vs in cols.items()})


# ----------------------------------------------------------------------------- the loop

def _valid_mean(x: np.ndarray, mask: np.ndarray) -> float:
    m = mask & np.isfinite(x)
    return float(x[m].mean()) if m.any() else float("nan")


PgBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None,
                torch.Tensor]
"""The rollout's ``(actions, old log-probs, advantages, returns, cell targets, weights)`` of the
PPO term, flattened to ``(T*N, ...)``."""


def improve_policy(net: SelectorNet, optimizer: torch.optim.Optimizer, cfg: L2LConfig,
                   rng: np.random.Generator, t_obs: dict[str, np.ndarray],
                   t_scores: torch.Tensor | None, t_scored: torch.Tensor | None,
                   pg_batch: PgBatch | None, use_aa: bool) -> tuple[dict[str, list[float]], bool]:
    """The gradient steps of one update: ``n_epochs`` passes of shuffled minibatches over the
    training observations ``t_obs`` (the rollout with the PPO term, ``pg_batch`` given; else the
    replay window), each step on ``pg_coef L_pg + all_action_coef L_aa - ent_coef H``. Returns
    the per-minibatch losses by name and whether ``target_kl`` stopped it early."""
    device = next(net.parameters()).device
    layout = net.layout
    use_pg = pg_batch is not None
    total = len(next(iter(t_obs.values())))
    stats: dict[str, list[float]] = {}
    stop = False
    for _epoch in range(cfg.n_epochs if (use_pg or use_aa) else 0):
        perm = rng.permutation(total)
        for start in range(0, total, cfg.minibatch_size):
            idx = perm[start:start + cfg.minibatch_size]
            mb_obs = {k: v[idx] for k, v in t_obs.items()}
            ti = torch.as_tensor(idx, device=device)
            logits, value, cell_value = net(*layout.tensors(mb_obs, device))
            loss = torch.zeros((), device=device)
            s: dict[str, float] = {}
            if pg_batch is not None:
                b_act, b_logp, b_adv, b_ret, b_cell, b_w = pg_batch
                pg, s = ppo_loss(logits, value, cell_value, b_act[ti], b_logp[ti], b_adv[ti],
                                 b_ret[ti], None if b_cell is None else b_cell[ti], b_w[ti], cfg)
                loss = loss + cfg.pg_coef * pg
            else:
                entropy = categorical_entropy(logits).mean()
                loss = loss - cfg.ent_coef * entropy
                s["entropy"] = entropy.item()
            if use_aa:
                assert t_scores is not None and t_scored is not None
                aa = all_action_loss(logits, t_scores[ti], t_scored[ti], cfg.temperature)
                loss = loss + cfg.all_action_coef * aa
                s["all_action_loss"] = aa.item()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for k, v in s.items():
                stats.setdefault(k, []).append(v)
        if use_pg:
            epoch_kl = np.mean(stats["approx_kl"][-math.ceil(total / cfg.minibatch_size):])
            if cfg.target_kl is not None and epoch_kl > cfg.target_kl:
                stop = True
                break
    return stats, stop


class Learner:
    """PPO learning driven one env step at a time: :meth:`action` for the env's current
    observation, then :meth:`observe` the env's answer to it; every ``n_steps`` observed steps
    make one update (:meth:`update`). :func:`learn` drives it over an env; a run's loop steps
    the env itself and drives it the same way.

    :param state: carried between learners on the same env (its current observation).
    :param gen: torch generator for action sampling; ``rng``: numpy generator for minibatches.
    :param history: per-update records are appended here.
    :param callback: ``callback(record)`` after each update; ``False`` sets :attr:`stopped`.
    :param writer: optional ``torch.utils.tensorboard.SummaryWriter``.
    """

    def __init__(self, net: SelectorNet, optimizer: torch.optim.Optimizer, env: Any,
                 cfg: L2LConfig, state: RolloutState, gen: torch.Generator,
                 rng: np.random.Generator, history: list[dict[str, Any]],
                 callback: Callable[[dict[str, Any]], bool | None] | None = None,
                 writer: Any | None = None) -> None:
        self.net, self.optimizer, self.cfg, self.state = net, optimizer, cfg, state
        self.gen, self.rng, self.history = gen, rng, history
        self.callback, self.writer = callback, writer
        self.driver = EnvDriver(env, state, cfg.seed)
        self.device = next(net.parameters()).device
        self.buffer = RolloutBuffer(n_choices=net.n_choices)
        self.acted: tuple[dict[str, np.ndarray], np.ndarray, torch.Tensor, torch.Tensor,
                          torch.Tensor] | None = None
        """What :meth:`action` saw and chose, until :meth:`observe` stores it."""
        self.env_steps = 0
        """Env steps of whole rollouts this learner learned from."""
        self.stopped = False
        self.t0 = time.perf_counter()

    def value_fn(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``V(obs)`` ``(N,)`` float64."""
        with torch.no_grad():
            return self.net(*self.net.layout.tensors(obs, self.device))[1].cpu().numpy() \
                .astype(np.float64)

    def action(self) -> np.ndarray:
        """The env's action for its current observation (sampled under ``explore``, else each
        cell's most probable choice)."""
        obs = self.driver.obs
        with torch.no_grad():
            logits, value, cell_value = self.net(*self.net.layout.tensors(obs, self.device))
            a = sample_choices(logits, self.gen) if self.cfg.explore else logits.argmax(dim=-1)
            logp = categorical_logp(logits, a)
        actions = a.cpu().numpy().astype(np.int8)
        self.acted = (obs, actions, logp, value, cell_value)
        return self.driver.env_action(actions)

    def observe(self, obs: Any, reward: Any, terminated: Any, truncated: Any,
                info: dict[str, Any]) -> None:
        """Store the env's answer to the last :meth:`action`; update after a whole rollout."""
        assert self.acted is not None, "Learner.observe before Learner.action"
        seen, actions, logp, value, cell_value = self.acted
        self.acted = None
        step = self.driver.record(obs, reward, terminated, truncated, info, self.value_fn,
                                  self.cfg.gamma)
        self.buffer.add(seen, actions, logp.cpu().numpy(), value.cpu().numpy().astype(np.float64),
                        cell_value.cpu().numpy().astype(np.float64), step)
        if len(self.buffer) == self.cfg.n_steps:
            self.update()

    def update(self) -> dict[str, Any]:
        """Learn from the collected rollout (advantages, replay window, :func:`improve_policy`),
        append its record to the history and start a new rollout; returns the record."""
        cfg, state, device = self.cfg, self.state, self.device
        ro = self.buffer.arrays()
        self.buffer = RolloutBuffer(n_choices=self.buffer.n_choices)
        n_steps = ro.actions.shape[0] * ro.actions.shape[1]
        self.env_steps += n_steps
        state.env_steps += n_steps
        valid = ro.valid
        adv, returns = compute_gae(ro.rewards, ro.values, ro.dones, self.value_fn(self.driver.obs),
                                   cfg.gamma, cfg.gae_lambda)
        c_cells = ro.actions.shape[2]
        cell_targets = cell_adv = None
        if ro.cell_rewards is not None:
            cell_targets = ro.cell_rewards.astype(np.float64) * c_cells
            cell_adv = cell_targets - ro.cell_values
        mixed = mix_advantages(adv, cell_adv, valid.astype(np.float64), cfg.cell_adv_coef,
                               cfg.norm_adv)
        score_arr = ro.scores * np.float32(c_cells)

        def flat(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            """(T, N, ...) -> (T*N, ...) tensor."""
            return torch.as_tensor(a.reshape(-1, *a.shape[2:]), dtype=dtype, device=device)

        b_obs = {k: v.reshape(-1, *v.shape[2:]) for k, v in ro.obs.items()}
        flat_scored = ro.scored.reshape(-1)
        flat_scores = score_arr.reshape(-1, *score_arr.shape[2:])
        use_pg = cfg.pg_coef > 0.0
        if cfg.all_action_coef > 0.0 and flat_scored.any():
            keep = max(cfg.replay, int(flat_scored.sum()))
            state.remember({k: v[flat_scored] for k, v in b_obs.items()},
                           flat_scores[flat_scored], keep)
        use_aa = cfg.all_action_coef > 0.0 and state.replay_scores is not None \
            and len(state.replay_scores) > 0
        if use_pg:  # PPO over the rollout; the all-action term on its scored steps
            t_obs, t_scores, t_scored = b_obs, torch.as_tensor(flat_scores, device=device), \
                torch.as_tensor(flat_scored, dtype=torch.float32, device=device)
        elif use_aa:  # only scored steps carry a gradient: learn from the replay window alone
            assert state.replay_obs is not None and state.replay_scores is not None
            t_obs = state.replay_obs
            t_scores = torch.as_tensor(state.replay_scores, device=device)
            t_scored = torch.ones(len(t_scores), device=device)
        else:
            t_obs, t_scores, t_scored = b_obs, None, None

        pg_batch = ((flat(ro.actions), flat(ro.logp), flat(mixed), flat(returns),
                     None if cell_targets is None else flat(cell_targets), flat(valid))
                    if use_pg else None)
        stats, stop = improve_policy(self.net, self.optimizer, cfg, self.rng, t_obs, t_scores,
                                     t_scored, pg_batch, use_aa)

        state.updates += 1
        var_r = float(np.var(returns[valid]))
        record: dict[str, Any] = {
            "update": state.updates, "env_steps": state.env_steps,
            "mean_reward": _valid_mean(ro.raw_rewards, valid),
            schema.COVERAGE: _valid_mean(ro.coverage, valid),
            schema.PL_PRECISION: _valid_mean(ro.pl_precision, valid),
            "explained_variance": (float("nan") if var_r == 0 else
                                   1.0 - float(np.var((returns - ro.values)[valid])) / var_r),
            "scored_steps": int(ro.scored.sum()),
            "early_stop": stop, "time_s": time.perf_counter() - self.t0,
            **{k: float(np.mean(v)) for k, v in stats.items()},
        }
        self.history.append(record)
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(f"l2l/{k}", v, state.env_steps)
        if self.callback is not None and self.callback(record) is False:
            self.stopped = True
        return record


def learn(learner: Learner, total_steps: int) -> dict[str, Any]:
    """Step ``learner``'s env until ``total_steps`` more env steps are learned from (rounded up
    to whole rollouts) or its callback stops it."""
    env = learner.driver.env
    while learner.env_steps < total_steps and not learner.stopped:
        learner.observe(*env.step(learner.action()))
    history = learner.history
    return {"env_steps": learner.env_steps, "updates": len(history),
            "last": history[-1] if history else {}}
