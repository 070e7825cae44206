"""The loop stage: the self-evolving loop of a semi-supervised run. The stage steps the env
(whose coupled segmenter trains every ``update_interval`` steps) with the agent's actions, in
checkpointed chunks; the agent sees every answer through its :meth:`~agents.Agent.stepper` (a
learner whose ``stepper`` is None steps the env inside its own ``learn``).

Exact resume: the segmenter, the env (position, RNGs, pending selections), the agent (weights,
optimiser, RNGs), the statistics and the process-global RNGs are restored from the checkpoint.
Chunks end at multiples of the env's ``update_interval`` (fresh predictions) and of the agent's
rollout length (whole learning updates), so a resumed run takes exactly the steps the
uninterrupted one takes.
"""

from __future__ import annotations

import copy
import os
import signal

import numpy as np
from tqdm.auto import tqdm

import agents
from agents import Agent
from experiments.checkpoint import agent_root, prune_agents, save_agent, set_rng_state
from experiments.recorder import PseudoLabelStats
from experiments.stages.base import RunContext, RunParts
from experiments.stages.evaluation import quick_eval

KILL_ENV = "L2L_RUN_KILL_AT_STEP"
"""Testing hook: SIGKILL this process when the loop reaches this many env steps (mid-chunk)."""


def saved_agent(run: RunContext) -> Agent | None:
    """The agent of the checkpoint to resume the loop from (None: none saved), loaded before
    any long work (a clear error when it is missing or corrupt)."""
    if run.stage != "loop" or not run.state.get("agent_dir"):
        return None
    folder = run.out / run.state["agent_dir"]
    try:
        return agents.load(folder)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"cannot resume {run.out}: the agent of its checkpoint cannot be "
                         f"loaded ({err}); restore {folder}, or start again with --overwrite"
                         ) from None


class LoopStage:
    """The loop of one run: :meth:`begin` (:meth:`start` after the warm-up, or :meth:`restore`
    from a ``loop`` checkpoint), then :meth:`run`. ``agent``: the checkpoint's, when resuming."""

    def __init__(self, run: RunContext, parts: RunParts, agent: Agent | None = None) -> None:
        self.run_ctx, self.parts = run, parts
        self.agent = agent
        self.rollout: dict[str, int] = {"env_steps": 0, "updates": 0}
        self.bar: tqdm | None = None
        """The progress bar of :meth:`run`."""

    def make_agent(self) -> Agent:
        return agents.make(self.run_ctx.cfg.agent, **self.run_ctx.resolved["agent_kwargs"])

    def start(self) -> None:
        """Make the warmed-up segmenter (its teacher a copy of the student) the env's start of
        run (what ``reset(seed=...)`` restores), reset the env with the run's seed, and
        checkpoint the start of the loop."""
        run, parts = self.run_ctx, self.parts
        env, seg = parts.env, parts.segmenter
        # Burn-in done: the EMA teacher starts the loop as a copy of the warmed-up student (as in
        # Unbiased Teacher), not as an average that still remembers the random initialisation.
        seg.teacher.load_state_dict(seg.model.state_dict())
        warmed = copy.deepcopy(seg.state_dict())
        env.reset(seed=run.cfg.seed)
        # env.state_dict() holds live references to the segmenter's tensors, which the reset
        # inside load_state_dict overwrites: work on a copy.
        state = copy.deepcopy(env.unwrapped.state_dict())
        state["segmenter"] = copy.deepcopy(warmed)
        state["initial_state"] = warmed
        env.unwrapped.load_state_dict(state)
        self.agent = self.make_agent()
        parts.recorder.total_steps = 0
        parts.stats = PseudoLabelStats()
        self.checkpoint(0, {"env_steps": 0, "updates": 0})

    def restore(self) -> None:
        """Go back to the last ``loop`` checkpoint."""
        st, parts = self.run_ctx.state, self.parts
        parts.env.reset(seed=self.run_ctx.cfg.seed)  # arms the wrappers; replaced below
        parts.env.unwrapped.load_state_dict(st["env"])
        if self.agent is None:  # else the checkpoint's agent
            self.agent = self.make_agent()
        parts.stats = PseudoLabelStats.from_state(st["stats"])
        parts.recorder.total_steps = int(st["loop_done"])
        self.rollout = dict(st["rollout"])
        set_rng_state(st["rng"])

    def checkpoint(self, done: int, rollout: dict[str, int]) -> None:
        run = self.run_ctx
        root = agent_root(run.out, run.ctx.rank)
        agent_dir = save_agent(self.agent, root, done) if self.agent.savable else None
        self.rollout = dict(rollout)
        # Saved relative to the run folder, so that a moved or copied folder resumes from anywhere.
        saved_dir = os.path.relpath(agent_dir, run.out) if agent_dir is not None else None
        run.save("loop", env=self.parts.env.unwrapped.state_dict(), agent_dir=saved_dir,
                 loop_done=done, rollout=dict(rollout), stats=self.parts.stats.state_dict())
        if agent_dir is not None:
            prune_agents(root, agent_dir)

    def rollout_progress(self) -> dict[str, int]:
        """The agent's learning counters (or the env steps, for agents that keep none)."""
        counters = self.agent.counters()
        return dict(counters) if counters is not None else {
            "env_steps": self.parts.recorder.total_steps, "updates": 0}

    @classmethod
    def begin(cls, run: RunContext, parts: RunParts, agent: Agent | None = None) -> LoopStage:
        """The loop stage started (:meth:`start`) or back at its checkpoint (:meth:`restore`),
        its TensorBoard writer open."""
        stage = cls(run, parts, agent)
        if run.reached("loop"):
            stage.restore()
        else:
            stage.start()
        run.open_logger("loop", run.state.get("loop_done") or None)
        return stage

    def run(self) -> Agent:
        """The remaining steps of the loop, chunk by chunk, each checkpointed (timed under
        ``loop``); returns the agent. Within a chunk the agent's stepper acts and observes (a
        learner learns from the steps, any other agent acts greedily)."""
        run, parts = self.run_ctx, self.parts
        agent, rec = self.agent, parts.recorder
        total, chunk = int(run.resolved["loop_steps"]), int(run.resolved["chunk_steps"])
        done = int(run.state.get("loop_done", 0))
        self.watch_steps(done, total)
        try:
            with run.timed("loop"):
                while done < total:
                    n = min(chunk, total - done)
                    obs = parts.env.unwrapped.current_observation()
                    # Go on from the env's current state (the same on a fresh and a resumed run).
                    writer = run.logger.writer
                    stepper = agent.stepper(rec, obs, self.rollout, writer=writer)
                    if stepper is None:  # a learner that steps the env inside its own learn
                        agent.continue_from(rec, obs, self.rollout)
                        agent.learn(rec, n, writer=writer)
                    else:
                        for _ in range(n):
                            stepper.observe(*rec.step(stepper.action()))
                    self.end_chunk(done, n)
                    done += n
        finally:
            self.bar.close()
            rec.on_step = None
        return agent

    def watch_steps(self, done: int, total: int) -> None:
        """The progress bar, updated at every recorded step (and the :data:`KILL_ENV` hook)."""
        run = self.run_ctx
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        self.bar = bar = tqdm(total=total, initial=done, disable=not run.progress,
                              desc=f"self-evolving loop ({run.cfg.agent})")

        def on_step(step: int) -> None:
            bar.update(1)
            if kill_at and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        self.parts.recorder.on_step = on_step

    def end_chunk(self, start: int, n: int) -> None:
        """After the chunk of ``n`` steps from ``start``: log and fold in its records, evaluate
        when an ``eval_every`` boundary was crossed, checkpoint."""
        run, parts = self.run_ctx, self.parts
        records = parts.recorder.drain()
        self.log_windows(records, start)
        point = parts.stats.add(records)
        done = start + n
        self.bar.set_postfix(cov=f"{point.get('coverage', 0):.2f}",
                             prec=f"{point.get('pl_precision', 0):.2f}", refresh=False)
        eval_every = run.cfg.eval_every
        if eval_every and run.ctx.is_main and (done // eval_every) > (start // eval_every):
            quick_eval(run, parts, step=done, tag="loop")
        self.checkpoint(done, self.rollout_progress())

    def log_windows(self, records: list[dict[str, float]], start: int) -> None:
        """TensorBoard scalars per window of ``update_interval`` steps."""
        logger = self.run_ctx.logger
        if logger.writer is None or not records:
            return
        k = int(self.run_ctx.resolved["env"]["update_interval"])
        for i in range(0, len(records), k):
            window = records[i:i + k]
            keys = {key for r in window for key in r if key != "updated"}
            means = {key: float(np.mean([r[key] for r in window if key in r])) for key in keys}
            logger.scalars("loop", means, start + i + len(window))
