"""Where the default run spends its time: a warm-up step, a loop step, a segmenter update and an
``l2l`` learning update, split into their parts (forward, backward, optimiser, data assembly,
text features, policy forward/backward, copies, Python).

Everything is built as the default run builds it (``l2l-run`` with no config: SynthRef, 5%
labels, the default segmenter at 64 px, env and ``l2l`` agent), in one process on one thread.
Each phase is measured three ways:

* plain wall time per unit (no profiler; median over repeats);
* ``cProfile``: seconds in named functions (cumulative, optionally only where called from a
  given caller), as shares of the phase; what no part claims is the phases' own Python;
* ``torch.profiler``: the share of the wall time spent inside torch operators (top-level
  operator events, the backward's autograd nodes included) and the operators that take most.
  A phase with a high share is compute-bound; the rest of its time is Python, NumPy and copies.

The parts are the run's own code paths, not copies: the warm-up is :func:`segmenter.fit` on the
labeled bank, the loop is :meth:`agents.l2l.L2LAgent.learn` on the env (every ``update_interval``
steps the env's segmenter update, every ``n_steps`` the policy update), the segmenter update is
:meth:`l2l_env.self_training.SelfTrainer.update` on a window of pending labels, the policy
update :func:`agents.l2l.ppo.improve_policy` on the agent's replay window.

    python benchmarks/bench_profile.py [--warmup-steps 6] [--loop-steps 128] [--repeats 3]
        [--out benchmarks/results/profile] [KEY=VALUE ...]

Writes ``<out>.json`` and ``<out>.md``. Profilers add their own overhead (cProfile to Python
calls, torch.profiler to operator calls): shares come from them, absolute times from the plain
runs. The loop's agent comparison is within the ``l2l`` loop (its policy parts against the rest):
a heuristic agent in the same process would train on other labels (a threshold keeps fewer
cells while the segmenter is young), so its loop would cost less for reasons other than learning.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402

import agents  # noqa: E402
import l2l_env  # noqa: E402
from agents.l2l import ppo  # noqa: E402
from experiments.config import load_config, validate  # noqa: E402
from l2l_env.config import make_config  # noqa: E402
from segmenter import fit  # noqa: E402

Match = tuple[str, str]
"""``(path suffix, function name)`` of a profiled function; ``("~", name)`` for built-ins."""


# --------------------------------------------------------------------------- cProfile parts

def _matches(key: tuple[str, int, str], match: Match) -> bool:
    file, _, name = key
    return name == match[1] and file.replace(os.sep, "/").endswith(match[0])


def cum(stats: pstats.Stats, match: Match, caller: Match | None = None) -> tuple[float, int]:
    """Cumulative seconds and calls of the functions ``match`` names (only the calls made by
    ``caller`` when given)."""
    seconds, calls = 0.0, 0
    for key, (_cc, nc, _tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not _matches(key, match):
            continue
        if caller is None:
            seconds, calls = seconds + ct, calls + nc
            continue
        for ckey, (_c, cnc, _t, cct) in callers.items():
            if _matches(ckey, caller):
                seconds, calls = seconds + cct, calls + cnc
    return seconds, calls


Part = tuple[str, Match, Match | None]
"""``(label, function, caller or None)``."""

MODULE_CALL: Match = ("torch/nn/modules/module.py", "_wrapped_call_impl")
BACKWARD: Match = ("torch/_tensor.py", "backward")
OPT_STEP: Match = ("torch/optim/optimizer.py", "wrapper")
SCALER_STEP: Match = ("torch/amp/grad_scaler.py", "step")
CLIP_NORM: Match = ("torch/nn/utils/clip_grad.py", "_no_grad_wrapper")
SCHED: Match = ("torch/optim/lr_scheduler.py", "step")
ITEM: Match = ("~", "<method 'item' of 'torch._C.TensorBase' objects>")
TRAIN_STEP: Match = ("segmenter/engine.py", "train_step")
LOGITS: Match = ("segmenter/engine.py", "_logits")
IMPROVE: Match = ("agents/l2l/ppo.py", "improve_policy")

TRAIN_STEP_PARTS: list[Part] = [
    ("inputs to tensors, checks", ("segmenter/engine.py", "_inputs"), TRAIN_STEP),
    ("text features (cached)", ("segmenter/engine.py", "text_features"), LOGITS),
    ("token ids", ("segmenter/engine.py", "token_ids"), LOGITS),
    ("prior warp (augmentation)", ("segmenter/prior_noise.py", "warp_priors"), TRAIN_STEP),
    ("forward", MODULE_CALL, LOGITS),
    ("loss", ("segmenter/loss.py", "loss_terms"), TRAIN_STEP),
    ("object-head loss", ("torch/nn/functional.py", "cross_entropy"), None),
    ("backward", BACKWARD, TRAIN_STEP),
    ("gradient clipping", CLIP_NORM, TRAIN_STEP),
    ("zero_grad", ("torch/_compile.py", "inner"), TRAIN_STEP),
    ("optimizer step", SCALER_STEP, TRAIN_STEP),
    ("lr schedule", SCHED, TRAIN_STEP),
    ("EMA teacher", ("segmenter/ema.py", "ema_update"), None),
    ("model.train() mode switch", ("torch/nn/modules/module.py", "train"), TRAIN_STEP),
    ("batch-norm snapshot (undo on failure), parameter list", ("segmenter/engine.py",
                                                                "<listcomp>"), TRAIN_STEP),
    ("host syncs (.item)", ITEM, TRAIN_STEP),
]
ROW_PARTS: list[Part] = [
    ("rows: images", ("l2l_env/rows.py", "ImageRows.fetch"), None),
    ("rows: priors (rendered boxes)", ("l2l_env/rows.py", "ProposalRows.fetch"), None),
    ("rows: masks (decoded)", ("l2l_env/rows.py", "MaskRows.fetch"), None),
    ("rows: object maps", ("l2l_env/objects.py", "ObjectRows.fetch"), None),
]


def _qualify(stats: pstats.Stats) -> pstats.Stats:
    """Give the row sources' ``fetch`` methods their class names (they share a file)."""
    import inspect

    from l2l_env import objects, rows

    where = {}
    for cls in (rows.ImageRows, rows.ProposalRows, rows.MaskRows, rows.GridRows,
                objects.ObjectRows):
        code = inspect.unwrap(cls.fetch).__code__
        where[(code.co_filename, code.co_firstlineno)] = f"{cls.__name__}.fetch"
    renamed = {}
    for key, value in stats.stats.items():  # type: ignore[attr-defined]
        file, line, name = key
        new_key = (file, line, where.get((file, line), name))
        callers = {(f, ln, where.get((f, ln), n)): v for (f, ln, n), v in value[4].items()}
        renamed[new_key] = (*value[:4], callers)
    stats.stats = renamed  # type: ignore[attr-defined]
    return stats


def profile_stats(run: Callable[[], Any]) -> pstats.Stats:
    """The cProfile statistics of one call of ``run``."""
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    return _qualify(pstats.Stats(prof))


COMPUTE_WORDS = ("forward", "backward", "optimizer step", "loss", "EMA", "clipping", "predict",
                 "update", "prior warp", "entropy", "pooling")


def kind(part: str) -> str:
    """``compute`` for the parts that are numerical work (network passes, optimiser, losses,
    augmentation), ``overhead`` for the rest (data assembly, copies, bookkeeping, Python)."""
    return "compute" if any(w in part for w in COMPUTE_WORDS) else "overhead"


def parts_table(total: float, seconds: list[tuple[str, float]], units: int,
                other: str = "other (Python of the phase itself, small calls)"
                ) -> dict[str, Any]:
    """Rows ``{"part", "s_per_unit", "share"}`` of disjoint parts of ``total`` seconds, plus
    ``other``: what none claims."""
    rows = [{"part": label, "kind": kind(label), "s_per_unit": sec / units, "share": sec / total}
            for label, sec in seconds]
    rest = total - sum(sec for _, sec in seconds)
    rows.append({"part": other, "kind": "overhead", "s_per_unit": rest / units,
                 "share": rest / total})
    return {"profiled_s_per_unit": total / units, "parts": rows}


def profile_parts(run: Callable[[], Any], root: Match, parts: list[Part], units: int
                  ) -> dict[str, Any]:
    """Run ``run`` under cProfile: seconds per unit of ``root`` and of each part (parts must
    not nest in each other), and their shares of ``root``."""
    stats = profile_stats(run)
    return parts_table(cum(stats, root)[0],
                       [(label, cum(stats, m, c)[0]) for label, m, c in parts], units)


# --------------------------------------------------------------------------- torch.profiler

def op_share(run: Callable[[], Any], top: int = 8) -> dict[str, Any]:
    """Run ``run`` under torch.profiler: the share of its wall time inside top-level torch
    operators, and the operators with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    wall_us = (time.perf_counter() - t0) * 1e6
    in_ops = sum(e.cpu_time_total for e in prof.events() if e.cpu_parent is None
                 and not e.name.startswith("ProfilerStep"))
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {"inside_torch_ops": in_ops / wall_us,
            "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / wall_us,
                         "calls": e.count} for e in ops[:top]]}


def plain(run: Callable[[], Any], units: int, repeats: int) -> dict[str, Any]:
    """Seconds per unit of ``run`` without a profiler: median and all repeats."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) / units)
    return {"s_per_unit": statistics.median(times), "repeats": times}


def measure(run: Callable[[], Any], units: int, repeats: int, root: Match,
            parts: list[Part]) -> dict[str, Any]:
    out = plain(run, units, repeats)
    out["cprofile"] = profile_parts(run, root, parts, units)
    out["torch_profiler"] = op_share(run)
    return out


# --------------------------------------------------------------------------- the phases

def build(overrides: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    """The default run's env (its segmenter untrained: the cost of a step does not depend on
    the weights) and resolved settings; every phrase encoded once, as the run's setup does."""
    cfg = load_config(None, {"threads": 1}, overrides)
    resolved = validate(cfg)
    env = gym.make(l2l_env.ENV_ID, config=make_config(resolved["env"]))
    u = env.unwrapped
    phrases = sorted(set(u.labeled.phrases) | set(u.unlabeled.phrases) | set(u.probe.phrases))
    for start in range(0, len(phrases), 64):
        u.segmenter.text_features(phrases[start:start + 64])
    return env, cfg, resolved


def warmup_phase(env: Any, cfg: Any, steps: int, repeats: int) -> dict[str, Any]:
    u = env.unwrapped
    seg, bank = u.segmenter, u.labeled
    batch = max(1, min(cfg.warmup_batch, len(bank)))

    def run() -> None:
        fit(seg, bank.images, bank.priors, bank.phrases, bank.masks, steps=steps,
            batch_size=batch, alt_priors=bank.distractors, objects=bank.objects, progress=False,
            log_every=10)

    run()  # first steps allocate
    parts: list[Part] = [("data assembly: " + label.split(": ")[1], m, c)
                         for label, m, c in ROW_PARTS] + TRAIN_STEP_PARTS
    out = measure(run, steps, repeats, ("segmenter/train.py", "fit"), parts)
    out["batch"] = batch
    return out


def loop_phase(env: Any, agent: Any, steps: int, repeats: int) -> dict[str, Any]:
    run = lambda: agent.learn(env, steps)  # noqa: E731
    run()  # the first rollout builds the network and the replay window
    # a long run's replay window is full: its policy updates cost what they cost there
    agent.rollout.replay_obs, agent.rollout.replay_scores = full_replay(agent)
    learn: Match = ("agents/l2l/ppo.py", "learn")
    env_step: Match = ("l2l_env/env.py", "step")
    predictions: Match = ("l2l_env/env.py", "_predictions")
    env_parts: list[Part] = [
        ("env: segmenter update (SelfTrainer.update)", ("l2l_env/self_training.py", "update"),
         None),
        ("env: batched predictions (student + teacher)", ("segmenter/engine.py", "predict"),
         predictions),
        ("env: text embeddings of the window", ("l2l_env/env.py", "_text_embeddings"),
         predictions),
        ("env: window inputs (images, priors)", ("l2l_env/env.py", "_window_inputs"), None),
        ("env: pooling predictions to the grid", ("l2l_env/rows.py", "pool_to_grid"),
         predictions),
        ("env: reward", ("l2l_env/rewards.py", "step"), env_step),
        ("env: label construction", ("l2l_env/env.py", "_construct"), env_step),
        ("env: diagnostics (ground truth, reported only)", ("l2l_env/env.py", "_diagnostics"),
         None),
        ("env: calibration masks", ("l2l_env/env.py", "_calibration_mask"), None),
    ]
    out = plain(run, steps, repeats)
    stats = profile_stats(run)
    total = cum(stats, learn)[0]
    improve = cum(stats, IMPROVE)[0]
    driver = cum(stats, ("agents/l2l/ppo.py", "record"))[0]
    envs = cum(stats, env_step)[0]
    forward = cum(stats, MODULE_CALL, ("agents/l2l/ppo.py", "action"))[0] + \
        cum(stats, ("agents/l2l/ppo.py", "value_fn"), ("agents/l2l/ppo.py", "update"))[0]
    inner = [(label, cum(stats, m, c)[0]) for label, m, c in env_parts]
    seconds = [("policy: learning update (improve_policy)", improve),
               ("policy: rollout forward (acting, values)", forward),
               ("policy: rollout buffer, advantages, replay window, wrappers",
                total - improve - driver - forward - envs),
               ("env driver: observation batching, info arrays, resets", driver),
               *inner]
    out["cprofile"] = parts_table(total, seconds, steps,
                                  other="env: observation, step bookkeeping, other Python")
    out["torch_profiler"] = op_share(run)
    return out


def segmenter_update_run(env: Any) -> tuple[Callable[[], Any], int]:
    """``(run, pending)``: ``run()`` queues a window of pending labels (the teacher's, as the
    untrained ``l2l`` constructor gives them: every cell ``teacher``) and makes one
    :meth:`SelfTrainer.update`, like the loop's; ``pending`` labels per window."""
    u = env.unwrapped
    trainer, k = u.trainer, int(u.config.update_interval)
    calib = int(u.config.calibration_every)
    groups = u.unlabeled.ref_rows[:k - (k // calib if calib else 0)]
    rows = np.array([g[0] for g in groups], dtype=np.int64)
    bank = u.loop_bank
    size = int(u.segmenter.config.image_size)
    teacher = u.segmenter.predict(bank.images[rows], bank.priors[rows],
                                  [bank.phrases[r] for r in rows], teacher=True)
    rng = np.random.default_rng(0)

    def run() -> None:
        for r, t in zip(rows, teacher):
            trainer.add(int(r), (t > 0.5).astype(np.float32), np.ones((size, size), np.float32))
        trainer.update(rng)

    return run, int(len(rows))


def segmenter_update_phase(env: Any, repeats: int) -> dict[str, Any]:
    """One :meth:`SelfTrainer.update` on a window of pending labels."""
    run, pending = segmenter_update_run(env)
    run()
    parts: list[Part] = [
        ("pending labels to arrays", ("numpy/_core/shape_base.py", "stack"),
         ("l2l_env/self_training.py", "update")),
        ("batch assembly (row sources, concat)", ("l2l_env/self_training.py", "__call__"), None),
        ("probe score (predict)", ("l2l_env/self_training.py", "probe_score"), None),
        # predict runs the network through _logits too: the training forward is the one
        # train_step calls (its cached text features included)
        ("forward (text features included)", LOGITS, TRAIN_STEP),
    ] + [part for part in TRAIN_STEP_PARTS if part[2] != LOGITS]
    out = measure(run, 1, repeats, ("l2l_env/self_training.py", "update"), parts)
    out["pending_labels"] = pending
    out["train_steps"] = int(env.unwrapped.config.update_steps)
    return out


def full_replay(agent: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The agent's replay window at its full size (``replay`` steps): the scored steps seen so
    far, repeated (what an update costs depends on the sizes alone)."""
    replay = agent.rollout
    have = len(replay.replay_scores)
    idx = np.arange(max(agent.config.replay, have)) % have
    return {k: v[idx] for k, v in replay.replay_obs.items()}, replay.replay_scores[idx]


def policy_update_phase(agent: Any, agent_kwargs: dict[str, Any], repeats: int,
                        widths: tuple[int, ...] = (16,)) -> dict[str, Any]:
    """One :func:`agents.l2l.ppo.improve_policy` on the agent's replay window (the all-action
    term of the default ``construct`` agent); and its plain time with a trunk of each of
    ``widths`` channels instead of ``hidden`` (what a lighter policy would cost)."""
    cfg = agent.config
    window, scores = full_replay(agent)
    scores = torch.as_tensor(scores)
    scored = torch.ones(len(scores))
    rng = np.random.default_rng(0)

    def run() -> None:
        ppo.improve_policy(agent.net, agent.optimizer, cfg, rng, window, scores, scored, None,
                           cfg.all_action_coef > 0)

    parts: list[Part] = [
        ("minibatch observations to tensors (copies)",
         ("agents/l2l/policy.py", "tensors"), IMPROVE),
        ("policy forward", MODULE_CALL, IMPROVE),
        ("all-action loss", ("agents/l2l/ppo.py", "all_action_loss"), IMPROVE),
        ("entropy term", ("agents/l2l/ppo.py", "categorical_entropy"), IMPROVE),
        ("backward", BACKWARD, IMPROVE),
        ("gradient clipping", CLIP_NORM, IMPROVE),
        ("zero_grad", ("torch/optim/optimizer.py", "zero_grad"), IMPROVE),
        ("optimizer step", OPT_STEP, IMPROVE),
        ("host syncs (.item)", ITEM, IMPROVE),
    ]
    out = measure(run, 1, repeats, IMPROVE, parts)
    out["replay_steps"] = int(len(scores))
    out["minibatches"] = int(cfg.n_epochs * -(-len(scores) // cfg.minibatch_size))
    out["by_width"] = {}
    for hidden in widths:  # the same update with a narrower trunk (cost only)
        other = agents.make("l2l", **{**agent_kwargs, "hidden": hidden})
        other.build(agent.net.layout)
        cost = plain(lambda: ppo.improve_policy(other.net, other.optimizer, other.config, rng,
                                                window, scores, scored, None, True), 1, repeats)
        out["by_width"][hidden] = cost["s_per_unit"]
    return out


# --------------------------------------------------------------------------- report

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def phase_md(title: str, unit: str, res: dict[str, Any]) -> list[str]:
    cp, tp = res["cprofile"], res["torch_profiler"]
    compute = sum(r["share"] for r in cp["parts"] if r["kind"] == "compute")
    lines = [f"### {title}", "",
             f"{res['s_per_unit']:.3f} s per {unit} without a profiler (repeats: "
             f"{', '.join(f'{t:.3f}' for t in res['repeats'])}); "
             f"{cp['profiled_s_per_unit']:.3f} s under cProfile. Inside torch operators: "
             f"**{_pct(tp['inside_torch_ops'])}** of the wall time. Compute parts "
             f"**{_pct(compute)}**, overhead parts {_pct(1 - compute)}.", "",
             "| part | kind | share | s per " + unit + " (cProfile) |", "|---|---|---:|---:|"]
    for r in sorted(cp["parts"], key=lambda r: -r["share"]):
        if r["share"] >= 0.0005:
            lines.append(f"| {r['part']} | {r['kind']} | {_pct(r['share'])} | "
                         f"{r['s_per_unit']:.4f} |")
    lines += ["", "Top operators by self time (share of wall time under torch.profiler): " +
              ", ".join(f"`{o['op']}` {_pct(o['self_share'])}" for o in tp["top_ops"]), ""]
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="l2l-run overrides")
    p.add_argument("--warmup-steps", type=int, default=6, help="warm-up steps per measurement")
    p.add_argument("--loop-steps", type=int, default=128,
                   help="loop steps per measurement (a multiple of the agent's n_steps)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/profile")
    p.add_argument("--note", default="", help="a line about the machine's load, for the md")
    args = p.parse_intermixed_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    env, cfg, resolved = build(args.overrides)
    setup_s = time.perf_counter() - t0
    results: dict[str, Any] = {"setup_s": setup_s}
    results["warmup_step"] = warmup_phase(env, cfg, args.warmup_steps, args.repeats)
    print(f"warm-up step {results['warmup_step']['s_per_unit']:.3f} s", file=sys.stderr)
    agent = agents.make("l2l", **resolved["agent_kwargs"])
    env.reset(seed=0)
    results["loop_step"] = loop_phase(env, agent, args.loop_steps, args.repeats)
    print(f"loop step {results['loop_step']['s_per_unit']:.4f} s", file=sys.stderr)
    results["segmenter_update"] = segmenter_update_phase(env, args.repeats)
    results["l2l_update"] = policy_update_phase(agent, resolved["agent_kwargs"], args.repeats)
    policy = sum(r["share"] for r in results["loop_step"]["cprofile"]["parts"]
                 if r["part"].startswith("policy:"))
    results["loop_policy_share"] = policy
    command = ("python benchmarks/bench_profile.py " + " ".join(
        [f"--warmup-steps {args.warmup_steps}", f"--loop-steps {args.loop_steps}",
         f"--repeats {args.repeats}", *args.overrides])).strip()
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch "
               f"{torch.__version__}, 1 torch thread, Python {platform.python_version()}")
    results["command"], results["machine"], results["note"] = command, machine, args.note
    lo = results["loop_step"]
    md = ["# Profile of the default run", "",
          f"Command: `{command}`", f"Machine: {machine}." + (f" {args.note}" if args.note else ""),
          "", "Shares (percent of a phase) come from cProfile and torch.profiler in one process; "
          "absolute seconds from plain runs in the same process.", "",
          f"The constructor's own work (its learning update, its forward pass per step, its "
          f"buffers) is **{_pct(policy)}** of an `l2l` loop step: the same loop without it "
          f"(an agent that only acts, on the same labels) would cost {1 - policy:.2f} of it, "
          f"i.e. `l2l` costs {1 / (1 - policy):.2f}x such a loop.", ""]
    seg, pol = results["segmenter_update"], results["l2l_update"]
    md += phase_md(f"Warm-up step (batch {results['warmup_step']['batch']})", "step",
                   results["warmup_step"])
    md += phase_md(f"Loop step (`l2l`, {args.loop_steps} steps per measurement)", "step", lo)
    md += phase_md(f"Segmenter update ({seg['pending_labels']} pending labels, "
                   f"{seg['train_steps']} optimiser steps)", "update", seg)
    md += phase_md(f"`l2l` learning update ({pol['replay_steps']} replayed steps, "
                   f"{pol['minibatches']} minibatches)", "update", pol)
    md += [f"The same update with a trunk of {h} channels (default "
           f"{agent.config.hidden}): {t:.3f} s ({t / pol['s_per_unit']:.2f}x)."
           for h, t in pol["by_width"].items()] + [""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=2))
    Path(f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
