"""Does the learned ``l2l`` selector beat the heuristics? Reward over training, and pseudo-label
precision at equal coverage, on SynthRef with the real ``l2l/PseudoLabel-v0`` env in its
``select`` form (which cells to keep; the ``hybrid`` reward), every agent speaking that form.

1. One env is built and its segmenter warmed up on the labeled split once (the warmed-up state is
   cached on disk and reused by later runs with the same settings). ``reset(seed=s)`` restores
   that start exactly, so every agent starts from the same segmenter and sees the same sample order.
2. Closed loop: each heuristic (``none``, ``all``, ``threshold``, ``prior``, ``agreement``,
   ``random``) and ``l2l`` run the self-evolving loop for the same number of env steps; the
   segmenter trains on each agent's own selections. Per agent: mean reward per window of steps,
   coverage, pooled pseudo-label precision from ``info`` (diagnostic, against ground truth), probe
   mIoU. ``l2l`` learns from the env's reward alone (``learn``); its windows show the reward rising.
   (``prior`` runs in an env with ``label_source="prior"``, its ``preferred_label_source``.)
3. Precision at equal coverage: after ``l2l``'s run, its env goes on for ``--eval-states`` more
   steps under ``l2l``'s deterministic selection; for every visited state the benchmark records
   the observation and which cells' teacher labels are right (a diagnostic read of the env's
   ground truth; nothing learns from it). On these shared states it compares selectors at the same
   coverage: ``l2l``'s per-cell logits thresholded at the quantile that gives coverage
   ``c``; ``threshold`` swept over ``tau``; ``agreement`` swept over ``(tau, prior_tau)`` (its best
   precision among settings with coverage >= ``c``).

Writes ``<out>.json`` and ``<out>.md`` (command, machine, settings, tables).

    python benchmarks/bench_agents.py [--steps 768] [--grid 32] [--warmup-steps 300]
        [--out benchmarks/results/agents_results]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import agents
import l2l_env
from l2l_env.data.cache import cache_dir

HEURISTICS = ("none", "all", "threshold", "prior", "agreement", "random")
COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class BenchConfig:
    """Settings of one benchmark run (written into the results)."""

    steps: int = 768
    """Env steps per agent (closed loop)."""
    window: int = 128
    """Steps per reward window."""
    eval_states: int = 256
    """States for the precision-at-equal-coverage comparison."""
    grid: int = 32
    num_train: int = 2000
    label_ratio: float = 0.05
    warmup_steps: int = 300
    seed: int = 0
    threads: int = 2
    cache_dir: str | None = None
    l2l: dict[str, Any] = field(default_factory=lambda: {
        "n_steps": 32, "minibatch_size": 32, "action_form": "select", "explore": True, "pg_coef": 1.0})
    env: dict[str, Any] = field(default_factory=lambda: {
        "action": "select", "reward": "hybrid", "calibration_every": 0})
    """Extra env config keys (this benchmark studies the ``select`` form: which cells to keep)."""

    def env_kwargs(self) -> dict[str, Any]:
        return {"data_options": {"num_train": self.num_train, "num_eval": 50},
                "label_ratio": self.label_ratio, "grid_size": self.grid, "seed": self.seed,
                "cache_dir": self.cache_dir, **self.env}


class InfoRecorder(gym.Wrapper):
    """Records the reward and the diagnostic ``info`` fields of every step."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.rows: list[dict[str, float]] = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        row = {"reward": float(reward), "coverage": float(info["coverage"]),
               "selected": float(info.get("pl_selected_pixels", np.nan)),
               "correct": float(info.get("pl_correct_pixels", np.nan))}
        if info.get("updated"):
            row["probe_mIoU"] = float(info["segmenter"]["probe_mIoU"])
        self.rows.append(row)
        return obs, reward, terminated, truncated, info


# ----------------------------------------------------------------------------- env

def build_envs(cfg: BenchConfig) -> tuple[gym.Env, gym.Env, dict[str, Any]]:
    """``(teacher-label env, prior-label env, warm-up facts)``, both from the same warmed-up
    segmenter (the env's own warm-up cache: computed once, then read by both and by later runs)."""
    kwargs = {**cfg.env_kwargs(), "warmup_steps": cfg.warmup_steps,
              "warmup_cache": str(cache_dir(cfg.cache_dir) / "warmup")}
    t0 = time.perf_counter()
    env = gym.make(l2l_env.ENV_ID, **kwargs)
    warm_s = time.perf_counter() - t0
    prior_env = gym.make(l2l_env.ENV_ID, **kwargs, label_source="prior")
    probe = env.unwrapped.trainer.probe_score()
    return env, prior_env, {"warmup_cache": kwargs["warmup_cache"], "build_s": round(warm_s, 1),
                            "probe_mIoU_after_warmup": probe}


# ----------------------------------------------------------------------------- closed loop

def summarise(rows: list[dict[str, float]], window: int) -> dict[str, Any]:
    r = np.array([x["reward"] for x in rows])
    cov = np.array([x["coverage"] for x in rows])
    sel = np.array([x["selected"] for x in rows])
    cor = np.array([x["correct"] for x in rows])
    probe = [x["probe_mIoU"] for x in rows if "probe_mIoU" in x]
    wins = [float(r[i:i + window].mean()) for i in range(0, len(r), window)]
    return {"steps": len(r), "mean_reward": float(r.mean()), "reward_windows": wins,
            "coverage": float(cov.mean()),
            "pl_precision": float(np.nansum(cor) / np.nansum(sel)) if np.nansum(sel) else float("nan"),
            "probe_mIoU_first": probe[0] if probe else float("nan"),
            "probe_mIoU_last": probe[-1] if probe else float("nan")}


def run_heuristic(name: str, env: gym.Env, cfg: BenchConfig) -> dict[str, Any]:
    agent = agents.make(name, action_form="select", **({"seed": cfg.seed} if name == "random" else {}))
    rec = InfoRecorder(env)
    obs, _ = rec.reset(seed=cfg.seed)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        obs, _, _, truncated, _ = rec.step(agent.act(obs))
        if truncated:
            obs, _ = rec.reset()
    return {**summarise(rec.rows, cfg.window), "wall_s": round(time.perf_counter() - t0, 1)}


def run_l2l(env: gym.Env, cfg: BenchConfig) -> tuple[agents.L2LAgent, dict[str, Any], InfoRecorder]:
    agent = agents.make("l2l", seed=cfg.seed, **cfg.l2l)
    rec = InfoRecorder(env)
    t0 = time.perf_counter()
    agent.learn(rec, cfg.steps)
    out = summarise(rec.rows, cfg.window)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["updates"] = [{k: h[k] for k in ("env_steps", "mean_reward", "coverage", "pl_precision",
                                         "entropy", "approx_kl", "clip_frac")} for h in agent.history]
    w = out["reward_windows"]
    out["reward_first_window"], out["reward_last_window"] = w[0], w[-1]
    return agent, out, rec


# ----------------------------------------------------------------------------- equal coverage

def collect_states(agent: agents.L2LAgent, rec: InfoRecorder, n: int
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` states of the env going on under ``agent``'s deterministic selection, and the
    per-cell label correctness of each."""
    last = agent.last_obs  # the observation the learner stopped at (batched, one env)
    obs = {k: v[0] for k, v in last.items()} if last is not None else rec.reset()[0]
    states, right = [], []
    for _ in range(n):
        states.append(obs)
        obs, _, _, truncated, info = rec.step(agent.act(obs))
        right.append(info["pl_cell_correct"])  # the env's diagnostic for the state just acted on
        if truncated:
            obs, _ = rec.reset()
    return {k: np.stack([s[k] for s in states]) for k in states[0]}, np.stack(right)


def quality(sel: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """``(coverage, pooled precision)`` of a boolean ``(N, C)`` selection."""
    n = sel.sum()
    return float(sel.mean()), float((right * sel).sum() / n) if n else float("nan")


def sweep(name: str, grid: list[dict[str, float]], batch: dict[str, np.ndarray],
          right: np.ndarray) -> list[dict[str, float]]:
    pts = []
    for params in grid:
        sel = agents.make(name, action_form="select", **params).act(batch).astype(bool)
        cov, prec = quality(sel, right)
        pts.append({**params, "coverage": cov, "precision": prec})
    return pts


def best_at(points: list[dict[str, float]], c: float) -> float:
    """Best precision among settings whose coverage is at least ``c`` (NaN if none reaches it)."""
    ok = [p["precision"] for p in points
          if p["coverage"] >= c - 1e-9 and np.isfinite(p["precision"])]
    return max(ok) if ok else float("nan")


def reward_scores(env: gym.Env, batch: dict[str, np.ndarray]) -> np.ndarray | None:
    """Each cell's immediate reward share were it selected, ``(N, G*G)``, from the env's own reward
    on the observed maps (teacher labels); ``None`` for a reward that reads ground truth.

    Ranking cells by it is what a perfect learner of the immediate reward would do: the ceiling of
    what ``l2l`` can learn from that part of the reward.
    """
    from l2l_env.rewards import StepContext

    fn = env.unwrapped.reward_fn
    if fn.uses_ground_truth or env.unwrapped.config.label_source != "teacher":
        return None
    out = []
    for i in range(len(batch["teacher"])):
        t = batch["teacher"][i, 0].ravel()
        ctx = StepContext(selection=np.ones(t.size, bool), labels=(t > 0.5).astype(np.float32),
                          prior=batch["prior"][i, 0].ravel(), student=batch["student"][i, 0].ravel(),
                          teacher=t, no_prior=bool(batch["no_prior"][i, 0] > 0.5))
        out.append(np.asarray(fn.step(ctx).cell_rewards, np.float64))
    return np.stack(out)


def top_fraction(scores: np.ndarray, c: float) -> np.ndarray:
    """Boolean selection of the ``c`` fraction of cells with the highest scores (over all states)."""
    flat = np.sort(scores.ravel())[::-1]
    return scores >= flat[max(1, int(round(c * flat.size))) - 1]


def equal_coverage(agent: agents.L2LAgent, batch: dict[str, np.ndarray], right: np.ndarray,
                   reward_cells: np.ndarray | None) -> dict[str, Any]:
    logits = agent.logits(batch)  # (N, C, 2) under select: drop, keep
    scores = logits[..., 1] - logits[..., 0]  # ranks cells even where probabilities saturate
    det_cov, det_prec = quality(scores > 0.0, right)
    taus = [float(t) for t in np.round(np.linspace(0.5, 0.995, 100), 4)]
    th = sweep("threshold", [{"tau": t} for t in taus], batch, right)
    pairs = [{"tau": t, "prior_tau": p} for t in taus[::4] for p in taus[::4]]
    ag = sweep("agreement", pairs, batch, right)
    rows = []
    for c in sorted({*COVERAGES, round(det_cov, 3)}):
        if c <= 0:
            continue
        cov, prec = quality(top_fraction(scores, c), right)
        rows.append({"coverage": c, "l2l_coverage": cov, "l2l": prec, "threshold": best_at(th, cov),
                     "agreement": best_at(ag, cov),
                     "reward_ranking": (float("nan") if reward_cells is None
                                        else quality(top_fraction(reward_cells, cov), right)[1]),
                     "all": quality(np.ones_like(right, bool), right)[1]})
    defaults = {n: dict(zip(("coverage", "precision"),
                            quality(agents.make(n, action_form="select").act(batch).astype(bool),
                                    right)))
                for n in ("threshold", "agreement", "all")}
    return {"states": int(len(right)), "l2l_deterministic": {"coverage": det_cov, "precision": det_prec},
            "heuristic_defaults": defaults, "table": rows, "threshold_sweep": th, "agreement_sweep": ag}


# ----------------------------------------------------------------------------- report

def markdown(res: dict[str, Any]) -> str:
    cfg = res["config"]
    lines = ["# Agents on SynthRef: reward over training and precision at equal coverage", "",
             f"Command: `{res['command']}`  ", f"Machine: {res['machine']}  ",
             f"Total wall time: {res['wall_s']:.0f} s; env steps per agent: {cfg['steps']}; "
             f"grid {cfg['grid']}; label ratio {cfg['label_ratio']}; warm-up {cfg['warmup_steps']} "
             f"segmenter steps (probe mIoU after warm-up {res['warmup']['probe_mIoU_after_warmup']:.3f}).",
             "", "## Closed loop (each agent drives its own self-evolving run from the same start)", "",
             f"Reward windows are means over {cfg['window']} steps. Precision: pooled pixel precision of "
             "the selected pseudo-labels against ground truth (diagnostic; no agent learns from it).", "",
             "| agent | mean reward | first window | last window | coverage | PL precision | probe mIoU start -> end |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res["closed_loop"].items():
        w = r["reward_windows"]
        lines.append(f"| {name} | {r['mean_reward']:.4f} | {w[0]:.4f} | {w[-1]:.4f} | {r['coverage']:.3f} | "
                     f"{r['pl_precision']:.4f} | {r['probe_mIoU_first']:.3f} -> {r['probe_mIoU_last']:.3f} |")
    l2l = res["closed_loop"]["l2l"]
    lines += ["", "l2l reward by window: " + ", ".join(f"{x:.4f}" for x in l2l["reward_windows"]), "",
              "## Precision at equal coverage (shared states)", "",
              f"{res['equal_coverage']['states']} states visited after l2l's run. l2l: its per-cell "
              "logits cut at the quantile giving the coverage; threshold / agreement: best "
              "precision over their swept thresholds with at least that coverage. Reward ranking: "
              "the cells with the highest immediate reward the env would pay (the ceiling of what "
              "a learner of that reward can rank; not an agent).", "",
              "| coverage | l2l | threshold | agreement | reward ranking | all |",
              "|---|---|---|---|---|---|"]
    for row in res["equal_coverage"]["table"]:
        lines.append(f"| {row['l2l_coverage']:.3f} | {row['l2l']:.4f} | {row['threshold']:.4f} | "
                     f"{row['agreement']:.4f} | {row['reward_ranking']:.4f} | {row['all']:.4f} |")
    d = res["equal_coverage"]["l2l_deterministic"]
    lines += ["", f"l2l's own deterministic selection (p > 0.5): coverage {d['coverage']:.3f}, "
              f"precision {d['precision']:.4f}.", ""]
    for n, v in res["equal_coverage"]["heuristic_defaults"].items():
        lines.append(f"- {n} (default parameters): coverage {v['coverage']:.3f}, precision {v['precision']:.4f}")
    lines += ["", "## Verdict", "", res["verdict"], ""]
    return "\n".join(lines)


def verdict(res: dict[str, Any]) -> str:
    l2l = res["closed_loop"]["l2l"]
    rises = l2l["reward_last_window"] > l2l["reward_first_window"]
    rows = [r for r in res["equal_coverage"]["table"]
            if np.isfinite(r["threshold"]) and np.isfinite(r["agreement"])]
    wins = [r for r in rows if r["l2l"] > r["threshold"] and r["l2l"] > r["agreement"]]
    return (f"l2l reward {'rises' if rises else 'does NOT rise'} over training "
            f"({l2l['reward_first_window']:.4f} -> {l2l['reward_last_window']:.4f}). "
            f"At equal coverage l2l's precision is above both threshold's and agreement's at "
            f"{len(wins)} of {len(rows)} coverage levels where both heuristics reach that coverage.")


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), python {platform.python_version()}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = BenchConfig()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--window", type=int, default=d.window)
    p.add_argument("--eval-states", type=int, default=d.eval_states)
    p.add_argument("--grid", type=int, default=d.grid)
    p.add_argument("--num-train", type=int, default=d.num_train)
    p.add_argument("--label-ratio", type=float, default=d.label_ratio)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--l2l", default=json.dumps(d.l2l), help="JSON of L2LConfig overrides")
    p.add_argument("--env", default="{}", help="JSON of extra env config keys")
    p.add_argument("--agents", default=",".join(HEURISTICS), help="heuristics to run (l2l always runs)")
    p.add_argument("--out", default=str(Path(__file__).with_name("agents_results")))
    a = p.parse_args(argv)
    cfg = BenchConfig(steps=a.steps, window=a.window, eval_states=a.eval_states, grid=a.grid,
                      num_train=a.num_train, label_ratio=a.label_ratio, warmup_steps=a.warmup_steps,
                      seed=a.seed, threads=a.threads, cache_dir=a.cache_dir, l2l=json.loads(a.l2l),
                      env=json.loads(a.env))
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    env, prior_env, warm = build_envs(cfg)
    print(f"envs ready in {time.perf_counter() - t0:.0f} s: {warm}", flush=True)
    closed: dict[str, Any] = {}
    for name in [n for n in a.agents.split(",") if n]:
        closed[name] = run_heuristic(name, prior_env if name == "prior" else env, cfg)
        brief = {k: v for k, v in closed[name].items() if k != "reward_windows"}
        print(f"{name}: {json.dumps(brief)}", flush=True)
    agent, closed["l2l"], rec = run_l2l(env, cfg)
    print(f"l2l: windows {[round(x, 4) for x in closed['l2l']['reward_windows']]}", flush=True)
    batch, right = collect_states(agent, rec, cfg.eval_states)
    res: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(x) for x in
                                        [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(), "config": dataclasses.asdict(cfg), "warmup": warm,
        "closed_loop": closed,
        "equal_coverage": equal_coverage(agent, batch, right, reward_scores(env, batch))}
    res["wall_s"] = time.perf_counter() - t0
    res["verdict"] = verdict(res)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown(res))
    print(res["verdict"])
    return res


if __name__ == "__main__":
    main()
