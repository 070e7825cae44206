"""PPO with per-cell clipped ratios for the L2L selector: the whole update rule in one file.

Policy. The selector (:mod:`agents.l2l.policy`) gives a logit ``l_c`` per grid cell; the action is
``G*G`` independent Bernoulli draws ``a_c ~ Bernoulli(sigmoid(l_c))`` (1 = the cell's pixels
become pseudo-labels). ``log pi(a_c) = a_c log sigmoid(l_c) + (1 - a_c) log sigmoid(-l_c)``.

Rollout. ``n_steps`` env steps per update (per env of a vector env). Each step stores the
observation, the action, the per-cell log-probabilities, the value ``V(s_t)``, the scalar reward
``r_t`` and, when the env provides it, ``info["cell_rewards"]`` (each cell's share of ``r_t``).
Episodes are only ever truncated: a truncated step bootstraps ``r_t += gamma * V(s_final)``.

Advantages.
  * scalar: GAE over the per-step reward,
    ``delta_t = r_t + gamma V(s_{t+1}) (1 - done_t) - V(s_t)``,
    ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``; value target ``R_t = A_t + V(s_t)``.
  * per cell (credit assignment over 1,024 cells), when the env gives ``info["cell_rewards"]``:
    the cell's immediate reward ``y_{t,c} = C * cell_rewards_{t,c}`` (``C = G*G``, so ``y`` has the
    scale of ``r_t``) minus a per-cell baseline ``b_c(s_t)`` from the network's per-cell value head:
    ``A^cell_{t,c} = y_{t,c} - b_c(s_t)``. (A shared baseline would push unselected bad cells
    toward selection whenever the mean reward is positive; the per-cell one does not.)
  * mixed: with normalisation on, each part is standardised over the batch, then
    ``A_{t,c} = (1 - k) A_t + k A^cell_{t,c}`` with ``k = cell_adv_coef`` (``k = 0`` or no cell
    rewards: the scalar advantage for every cell).

Loss (minibatch mean over steps and cells). Each cell's ratio is clipped on its own:
  ``rho_{t,c} = exp(log pi_new(a_{t,c}) - log pi_old(a_{t,c}))``,
  ``L_pg = mean_{t,c} max(-A_{t,c} rho_{t,c}, -A_{t,c} clip(rho_{t,c}, 1 - eps, 1 + eps))``.
  (One joint ratio ``prod_c rho_{t,c}`` over 1,024 cells explodes: a 1% change per cell is a
  factor ``1.01^1024 ~ 26,000``.)
  ``L = L_pg - ent_coef * mean_{t,c} H(Bernoulli(sigmoid(l_c)))
        + vf_coef * 0.5 [(V - R)^2 + mean_c (b_c - y_c)^2]`` (the cell term only with cell rewards),
  gradient norm clipped to ``max_grad_norm``; optional early stop when the mean per-cell KL
  estimate exceeds ``target_kl``.

Every update appends a record (mean reward, coverage, pseudo-label precision from ``info``,
losses, KL, clip fraction) to the history list, calls ``callback(agent, record)`` and writes the
record to an optional TensorBoard ``SummaryWriter``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, VectorEnv

from agents.l2l.policy import SelectorNet
from agents.obs import as_batch


@dataclass
class L2LConfig:
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
    # --- run
    seed: int = 0
    device: str = "cpu"
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available)."""

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        checks = {"n_steps": self.n_steps >= 1, "n_epochs": self.n_epochs >= 1,
                  "minibatch_size": self.minibatch_size >= 1, "gamma": 0.0 <= self.gamma <= 1.0,
                  "gae_lambda": 0.0 <= self.gae_lambda <= 1.0,
                  "cell_adv_coef": 0.0 <= self.cell_adv_coef <= 1.0,
                  "clip_coef": self.clip_coef > 0.0, "learning_rate": self.learning_rate > 0.0,
                  "dilations": len(self.dilations) >= 1 and min(self.dilations) >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"L2LConfig: invalid value for {bad}: "
                             f"{ {k: getattr(self, k) for k in bad} }")


# ----------------------------------------------------------------------------- distributions

def bernoulli_logp(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Per-cell ``log pi(a_c)`` of Bernoulli(sigmoid(logits)), same shape as ``logits``."""
    return -F.binary_cross_entropy_with_logits(logits, actions, reduction="none")


def bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-cell entropy (nats) of Bernoulli(sigmoid(logits))."""
    p = torch.sigmoid(logits)
    return p * F.softplus(-logits) + (1.0 - p) * F.softplus(logits)


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

    Shapes: ``logits, cell_values, actions, old_logp, cell_targets`` are ``(M, C)``; ``adv`` is
    ``(M, C)`` or ``(M, 1)``; ``values, returns, weights`` are ``(M,)``.
    """
    w = weights / weights.sum().clamp_min(1.0)
    new_logp = bernoulli_logp(logits, actions)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef))
    pg_loss = (pg.mean(dim=1) * w).sum()
    entropy = (bernoulli_entropy(logits).mean(dim=1) * w).sum()
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


@dataclass
class RolloutState:
    """What carries over between ``learn`` calls on the same env."""

    env: Any = None
    obs: dict[str, np.ndarray] | None = None
    reset_next: np.ndarray | None = None
    """(N,) True where the next vector-env step is an autoreset step (NEXT_STEP mode)."""
    env_steps: int = 0
    updates: int = 0


class EnvDriver:
    """Steps a single gymnasium env or a vector env with batched ``(N, ...)`` arrays."""

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

    def step(self, actions: np.ndarray, value_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
             gamma: float) -> dict[str, Any]:
        """One step of every sub-env; returns rewards (with truncation bootstrap), dones, a
        validity mask, and the info fields the learner uses."""
        valid = ~self.state.reset_next if self.mode == AutoresetMode.NEXT_STEP else np.ones(self.n, bool)
        act = actions if self.vector else actions[0]
        obs, reward, terminated, truncated, info = self.env.step(act)
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
        for key in ("cell_rewards", "coverage", "pl_precision"):
            out[key] = _info_array(info, key, self.n, self.vector)
        return out


# ----------------------------------------------------------------------------- the loop

def _valid_mean(x: np.ndarray, mask: np.ndarray) -> float:
    m = mask & np.isfinite(x)
    return float(x[m].mean()) if m.any() else float("nan")


def learn(net: SelectorNet, optimizer: torch.optim.Optimizer, env: Any, total_steps: int,
          cfg: L2LConfig, state: RolloutState, gen: torch.Generator, rng: np.random.Generator,
          history: list[dict[str, Any]],
          callback: Callable[[dict[str, Any]], bool | None] | None = None, writer: Any | None = None) -> dict[str, Any]:
    """Run PPO updates until ``total_steps`` more env steps are done (rounded up to whole rollouts).

    :param state: carried between calls (the env's current observation).
    :param gen: torch generator for action sampling; ``rng``: numpy generator for minibatches.
    :param history: per-update records are appended here.
    :param callback: ``callback(record)`` after each update; ``False`` stops learning.
    :param writer: optional ``torch.utils.tensorboard.SummaryWriter``.
    """
    driver = EnvDriver(env, state, cfg.seed)
    device = next(net.parameters()).device
    layout = net.layout
    n = driver.n
    steps_done = 0
    t0 = time.perf_counter()

    def value_fn(obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return net(*layout.tensors(obs, device))[1].cpu().numpy().astype(np.float64)

    def batch(x: list[np.ndarray], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(T, N, ...) list -> (T*N, ...) tensor."""
        a = np.stack(x)
        return torch.as_tensor(a.reshape(-1, *a.shape[2:]), dtype=dtype, device=device)

    while steps_done < total_steps:
        # ---- rollout
        obs_buf: dict[str, list[np.ndarray]] = {}
        acts, logps, vals, cvals, rews, raw_rews, dones, valids = [], [], [], [], [], [], [], []
        cells: list[np.ndarray | None] = []
        covs, precs = [], []
        for _ in range(cfg.n_steps):
            obs = driver.obs
            with torch.no_grad():
                logits, value, cell_value = net(*layout.tensors(obs, device))
                a = torch.bernoulli(torch.sigmoid(logits), generator=gen)
                logp = bernoulli_logp(logits, a)
            step = driver.step(a.cpu().numpy().astype(np.int8), value_fn, cfg.gamma)
            for k, v in obs.items():
                obs_buf.setdefault(k, []).append(v)
            acts.append(a.cpu().numpy().astype(np.int8))
            logps.append(logp.cpu().numpy())
            vals.append(value.cpu().numpy().astype(np.float64))
            cvals.append(cell_value.cpu().numpy().astype(np.float64))
            rews.append(step["reward"])
            raw_rews.append(step["raw_reward"])
            dones.append(step["done"].astype(np.float64))
            valids.append(step["valid"])
            cr = step["cell_rewards"]
            cells.append(None if cr is None else np.where(cr[1][:, None], cr[0], 0.0))
            for key, sink in (("coverage", covs), ("pl_precision", precs)):
                got = step[key]
                sink.append(np.where(got[1], got[0].reshape(n), np.nan) if got is not None
                            else np.full(n, np.nan))
        steps_done += cfg.n_steps * n
        state.env_steps += cfg.n_steps * n
        valid = np.stack(valids)
        rewards, values, done_arr = np.stack(rews), np.stack(vals), np.stack(dones)
        adv, returns = compute_gae(rewards, values, done_arr, value_fn(driver.obs),
                                   cfg.gamma, cfg.gae_lambda)
        c_cells = acts[0].shape[1]
        cell_targets = cell_adv = None
        if all(c is not None for c in cells):
            cell_targets = np.stack(cells).astype(np.float64) * c_cells
            cell_adv = cell_targets - np.stack(cvals)
        mixed = mix_advantages(adv, cell_adv, valid.astype(np.float64), cfg.cell_adv_coef, cfg.norm_adv)

        # ---- flatten (T, N, ...) -> (T*N, ...)
        b_obs = {k: np.stack(v).reshape(-1, *v[0].shape[1:]) for k, v in obs_buf.items()}
        b_act, b_logp, b_adv = batch(acts), batch(logps), batch(list(mixed))
        b_ret, b_w = batch(list(returns)), batch(valids)
        b_cell = None if cell_targets is None else batch(list(cell_targets))
        total = len(b_ret)

        # ---- update
        stats: dict[str, list[float]] = {}
        stop = False
        for _epoch in range(cfg.n_epochs):
            perm = rng.permutation(total)
            for start in range(0, total, cfg.minibatch_size):
                idx = perm[start:start + cfg.minibatch_size]
                mb_obs = {k: v[idx] for k, v in b_obs.items()}
                ti = torch.as_tensor(idx, device=device)
                logits, value, cell_value = net(*layout.tensors(mb_obs, device))
                loss, s = ppo_loss(logits, value, cell_value, b_act[ti], b_logp[ti], b_adv[ti], b_ret[ti],
                                   None if b_cell is None else b_cell[ti], b_w[ti], cfg)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                optimizer.step()
                for k, v in s.items():
                    stats.setdefault(k, []).append(v)
            epoch_kl = np.mean(stats["approx_kl"][-math.ceil(total / cfg.minibatch_size):])
            if cfg.target_kl is not None and epoch_kl > cfg.target_kl:
                stop = True
                break

        state.updates += 1
        var_r = float(np.var(returns[valid]))
        record: dict[str, Any] = {
            "update": state.updates, "env_steps": state.env_steps,
            "mean_reward": _valid_mean(np.stack(raw_rews), valid),
            "coverage": _valid_mean(np.stack(covs), valid),
            "pl_precision": _valid_mean(np.stack(precs), valid),
            "explained_variance": (float("nan") if var_r == 0 else
                                   1.0 - float(np.var((returns - values)[valid])) / var_r),
            "early_stop": stop, "time_s": time.perf_counter() - t0,
            **{k: float(np.mean(v)) for k, v in stats.items()},
        }
        history.append(record)
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    writer.add_scalar(f"l2l/{k}", v, state.env_steps)
        if callback is not None and callback(record) is False:
            break
    return {"env_steps": steps_done, "updates": len(history), "last": history[-1] if history else {}}
