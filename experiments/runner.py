"""The stages of one full semi-supervised run, resumable at any point.

    data + priors -> setup (env or labeled bank, segmenter, text features) -> supervised warm-up
    -> self-evolving loop (agent + env + coupled segmenter, in checkpointed chunks)
    -> final checkpoint -> evaluation on every eval split -> results.json

Exact resume. Everything that decides what the run computes is either rebuilt identically (data,
priors, the env's banks, the phrase features, which are all encoded once up front in a fixed order
so that their batching never depends on where a run stopped: held in memory, or for more phrases
than the text cache holds, in a packed store read per batch) or restored from the checkpoint:
the segmenter (weights, optimiser, schedule, EMA teacher, its RNG), the env (position, RNGs,
pending selections), the agent (weights, optimiser, RNGs), the runner's counters and statistics,
and the process-global RNGs. Chunks end at multiples of the env's ``update_interval`` (fresh
predictions) and of the agent's rollout length (whole learning updates), so a resumed run takes
exactly the steps the uninterrupted one takes.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import distributed as D
from experiments import outputs as O
from experiments.checkpoint import (agent_root, checkpoint_path, load_checkpoint, prune_agents,
                                    rng_state, save_agent, save_agent_dir, save_checkpoint,
                                    set_rng_state)
from experiments.config import RunConfig, differences
from experiments.logs import RunLogger, eval_panels, selection_panels, tb_dir
from experiments.recorder import PseudoLabelStats, StepRecorder
from experiments.report import METRIC_KEYS, write_json
from segmenter.shared.disk_cache import CacheFile
from segmenter.shared.files import sweep_temporaries

KILL_ENV = "L2L_RUN_KILL_AT_STEP"
"""Testing hook: SIGKILL this process when the loop reaches this many env steps (mid-chunk)."""
TEXT_BATCH = 1024
"""Phrases encoded per batch when a run encodes every phrase up front."""


def read_results(path: Path) -> dict[str, Any] | None:
    """The results of a finished run, or ``None`` when ``path`` is missing or not a JSON
    object (garbage, cut short)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Runner:
    """One run of ``cfg``; :meth:`run` executes (or resumes) it and returns the results dict.

    :param config_dict: the resolved config (``experiments.config.resolved_dict``).
    :param resume: continue from ``OUT/checkpoint.pt`` when it exists.
    :param ctx: the distributed context (single process by default).
    :param device: this process's torch device.
    """

    def __init__(self, cfg: RunConfig, config_dict: dict[str, Any], *, resume: bool = False,
                 ctx: D.DistContext | None = None, device: str | None = None) -> None:
        self.cfg = cfg
        self.config_dict = config_dict
        self.resolved = config_dict["resolved"]
        self.out = Path(self.resolved["out"])
        self.ctx = ctx or D.DistContext()
        self.device = device or cfg.device
        self.progress = bool(cfg.progress) and self.ctx.is_main
        self.ckpt_file = checkpoint_path(self.out, self.ctx.rank)
        self.state: dict[str, Any] = {}
        if resume and self.ckpt_file.exists():
            self.state = load_checkpoint(self.ckpt_file)
            diff = differences(self.state["config"], config_dict)
            if diff:
                raise ValueError(f"{self.out}: the checkpoint was made with another config "
                                 f"(differs in {diff}); resume with the same settings or choose "
                                 f"another --out")
        self.timing: dict[str, float] = dict(self.state.get("timing", {}))
        self.env: Any = None
        self.recorder: StepRecorder | None = None
        self.segmenter: Any = None
        self.bank: Any = None
        self.agent: Any = None
        self.stats = PseudoLabelStats()
        self.logger: RunLogger | None = None
        self.phrases: list[str] = []
        self.eval_data: dict[str, Any] = {}
        """Every eval split, loaded once (:class:`l2l_env.evaluation.EvalSplit`)."""
        self.data_info: dict[str, Any] = {}
        self.train_data: Any = None
        self.warm_cache: CacheFile | None = None
        """The shared warm-up cache of this run (``warmup_cache``), keyed by its train data."""
        self.rollout_counters: dict[str, int] = {"env_steps": 0, "updates": 0}
        self.dist_info: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None
        """The final segmenter's state, when a finished run is evaluated again."""
        self._prepared = False
        self._t_wall = time.perf_counter()

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def timed(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"{name}_s"
            self.timing[key] = self.timing.get(key, 0.0) + time.perf_counter() - t0

    @property
    def semi(self) -> bool:
        return self.resolved["mode"] == "semi-supervised"

    def env_config(self):
        from l2l_env.config import make_config

        env = copy.deepcopy(self.resolved["env"])
        env["device"] = self.device
        env["segmenter"] = {**env["segmenter"], "device": self.device}
        return make_config(env)

    def save(self, stage: str, **extra: Any) -> None:
        state = {"stage": stage, "config": self.config_dict, "timing": dict(self.timing),
                 "rng": rng_state(), **extra}
        save_checkpoint(self.ckpt_file, state)
        self.state = state

    # ------------------------------------------------------------------ stages
    def open_logger(self, name: str, purge_step: int | None) -> None:
        """TensorBoard writer of one stage (``OUT/tb/<name>``: warmup, loop, eval); on resume the
        interrupted run's events from ``purge_step`` on are dropped."""
        if self.logger is not None:
            self.logger.close()
        self.logger = RunLogger(tb_dir(self.out) / name, enabled=self.ctx.is_main, purge_step=purge_step)

    @property
    def finished(self) -> bool:
        """Done, with readable results (a lost or garbage ``results.json`` is evaluated again
        from the final segmenter)."""
        return self.state.get("stage") == "done" and (
            read_results(self.out / O.RESULTS) is not None or not self.ctx.is_main)

    def prepare(self) -> None:
        """Data, priors, env/bank, segmenter and phrase features: everything that can fail on a bad
        data root or a corrupt cache, before any long work."""
        if self._prepared or self.finished:
            return
        self._t_wall = time.perf_counter()
        if self.state.get("stage") == "done":  # finished, its results lost: evaluated again
            self.final = self.final_segmenter()
        self.out.mkdir(parents=True, exist_ok=True)
        # Temporaries of writes cut short by a kill (their writer is gone).
        for folder in (self.out, agent_root(self.out, self.ctx.rank), self.cfg.warmup_cache):
            if folder:
                sweep_temporaries(folder)
        env_cfg = self.env_config()
        with self.timed("data_priors"):
            self.prepare_data(env_cfg)
        with self.timed("setup"):
            self.setup(env_cfg)
        if self.state.get("stage") == "loop" and self.state.get("agent_dir"):
            self.agent = self.saved_agent(self.out / self.state["agent_dir"])
        self._prepared = True

    def run(self) -> dict[str, Any]:
        """Run (or continue) every remaining stage; returns the results."""
        if self.finished:
            return read_results(self.out / O.RESULTS) or {}
        stage = self.state.get("stage", "start")
        self.prepare()
        if self.state:
            self.timing["resumes"] = self.timing.get("resumes", 0) + 1
        if self.ctx.is_main:
            write_json(self.out / O.CONFIG, self.config_dict)
        t_wall = self._t_wall
        try:
            if stage in ("eval", "done"):
                self.segmenter.load_state_dict(self.state["segmenter"] if stage == "eval"
                                               else self.final)
                self.stats = PseudoLabelStats.from_state(self.state["stats"])
                self.dist_info = self.state.get("dist_info")
            else:
                if stage in ("start", "warmup"):
                    purge = self.state.get("warmup_done") if stage == "warmup" else None
                    self.open_logger("warmup", purge)
                    with self.timed("warmup"):
                        self.warm_up()
                    if self.semi:
                        self.install_start()
                else:
                    self.restore_loop()
                if self.semi:
                    self.open_logger("loop", self.state.get("loop_done") or None)
                    with self.timed("loop"):
                        self.loop()
                self.finish_training()
            set_rng_state(self.state["rng"])
            self.open_logger("eval", 0 if stage in ("eval", "done") else None)
            results = self.evaluate(t_wall)
        finally:
            if self.logger is not None:
                self.logger.close()
        return results

    def final_segmenter(self) -> dict[str, Any]:
        """The state of ``OUT/segmenter.pt`` of a finished run whose results were lost (a clear
        error when it is missing or unreadable too)."""
        file = self.out / O.SEGMENTER
        print(f"l2l-run: {self.out} finished but its {O.RESULTS} is missing or unreadable; "
              f"evaluating its {O.SEGMENTER} again", file=sys.stderr)
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # missing, cut short or garbage
            raise ValueError(f"{self.out} finished but its {O.RESULTS} is lost and {file} cannot "
                             f"be read ({type(err).__name__}: {err}); start the run again with "
                             "--overwrite") from None

    def prepare_data(self, env_cfg) -> None:
        """Load every split's table and compute (or read from the cache) its priors; collect the
        phrases for the text-feature cache. Errors here come before any long work."""
        from l2l_env.data import RefSplit
        from l2l_env.evaluation import EvalSplit
        from l2l_env.loop_data import load_table_of
        from l2l_env.priors import load_priors

        splits = ["train"] + list(self.resolved["eval_splits"])
        phrases: set[str] = set()
        for split in tqdm(splits, desc="data + priors", disable=not self.progress, leave=False):
            table = load_table_of(env_cfg, split)
            if split != "train":  # train images are all read at setup; eval ones only at the end
                table.check_images()  # so a corrupt one is named now, not after the warm-up
            samples = RefSplit(table, "per_sentence")
            priors = load_priors(env_cfg.dataset, split, samples, env_cfg.prior_provider,
                                 cache_dir=env_cfg.cache_dir, progress=self.progress,
                                 **env_cfg.prior_options)
            phrases.update(text for ref in table.refs for _, text in ref.sentences)
            self.data_info[f"{split}_sentences"] = table.num_sentences()
            if split == "train":
                self.train_data = (table, priors)
                self.warm_cache = self.warmup_cache_file(table)
            else:  # loaded once: every evaluation of the run reads it
                self.eval_data[split] = EvalSplit(split, samples, priors, env_cfg.proposal)
        self.phrases = sorted(phrases)

    def setup(self, env_cfg) -> None:
        """Build the env (semi-supervised) or the labeled bank and segmenter (fully supervised),
        shard and wrap for DDP, and encode every phrase once."""
        from l2l_env.factory import build_segmenter, segmenter_config

        table, priors = self.train_data
        seg_cfg = segmenter_config(env_cfg, table)
        stored = (seg_cfg.use_text and seg_cfg.freeze_text
                  and len(self.phrases) > int(seg_cfg.text_cache_size))
        if stored:  # more phrases than the text cache holds: features from a packed store
            from l2l_env.text_store import StoredTextEncoder, text_feature_store

            encoder = StoredTextEncoder(seg_cfg.text_encoder, frozen=True,
                                        max_tokens=seg_cfg.max_tokens,
                                        cache_size=seg_cfg.text_cache_size)
            self.segmenter = build_segmenter(env_cfg, text_encoder=encoder, table=table)
            with self.timed("text_store"):
                store = text_feature_store(encoder, self.phrases, env_cfg.cache_dir,
                                           self.segmenter.device)
            encoder.attach(store)
            self.data_info["text_features"] = f"read per batch from {store.path}"
        else:
            self.segmenter = build_segmenter(env_cfg, table=table)
        size = int(self.segmenter.config.image_size)
        if self.semi:
            import gymnasium as gym

            import l2l_env
            from l2l_env.loop_data import load_loop_data

            data = load_loop_data(env_cfg, size, table=table, priors=priors,
                                  distractors=self.segmenter.config.prior_swap > 0)
            data, self.data_info["shard"] = D.shard_data(data, self.ctx)
            env = gym.make(l2l_env.ENV_ID, config=env_cfg, segmenter=self.segmenter, data=data)
            u = env.unwrapped
            self.bank = u.labeled
            self.recorder = StepRecorder(env, keep_actions=max(4, self.cfg.log_images))
            self.env = env
            self.data_info.update(labeled_samples=len(u.labeled), probe_samples=len(u.probe),
                                  unlabeled_samples=len(u.unlabeled),
                                  labeled_images=len(u.label_split.labeled),
                                  unlabeled_images=len(u.label_split.unlabeled))
        else:
            from l2l_env.bank import build_bank
            from l2l_env.loop_data import load_train_mistakes
            from l2l_env.objects import config_vocabulary

            swap = self.segmenter.config.prior_swap > 0
            self.bank = build_bank(table, priors, size, env_cfg.grid_size, proposal=env_cfg.proposal,
                                   distractors=load_train_mistakes(env_cfg, table) if swap else None,
                                   cache_root=env_cfg.cache_dir,
                                   objects=config_vocabulary(env_cfg, table))
            self.data_info.update(labeled_samples=len(self.bank), unlabeled_samples=0)
        self.train_data = None
        D.wrap_segmenter(self.segmenter, self.ctx)
        seg = self.segmenter
        if seg.config.use_text and seg.config.freeze_text and not stored:
            self.encode_phrases(env_cfg.cache_dir)

    def encode_phrases(self, cache_root: str | None) -> None:
        """Encode every phrase of the run once, in a fixed order; the features of a frozen encoder
        are kept on disk, keyed by the encoder and the phrases, so later runs read them. (A run
        with more phrases than ``segmenter.text_cache_size`` reads them per batch from a packed
        store instead: :mod:`l2l_env.text_store`.)"""
        from l2l_env.text_store import phrase_features

        cached = phrase_features(self.segmenter, self.phrases, cache_root, TEXT_BATCH,
                                 write=self.ctx.is_main)
        if cached is not None:
            self.data_info["text_features_from_cache"] = str(cached)

    # ------------------------------------------------------------------ warm-up
    def warm_up(self) -> None:
        """Supervised steps on the labeled bank, in checkpointed pieces of ``checkpoint_every``."""
        from l2l_env.factory import read_warm_start, write_warm_start
        from segmenter import fit

        total = int(self.resolved["warmup_steps"])
        seg, bank = self.segmenter, self.bank
        if self.state.get("stage") == "warmup":
            seg.load_state_dict(self.state["segmenter"])
            set_rng_state(self.state["rng"])
        done = int(self.state.get("warmup_done", 0))
        if total == 0:
            return
        cache = self.warm_cache
        if cache is not None and done == 0 and read_warm_start(seg, cache):
            self.data_info["warmup_from_cache"] = str(cache.path)
            self.save("warmup", segmenter=seg.state_dict(), warmup_done=total)
            self.quick_eval(step=0, tag="warmup")
            return
        targets = bank.masks
        batch = max(1, min(self.cfg.warmup_batch, len(bank)))
        piece = self.cfg.checkpoint_every or total
        bar = tqdm(total=total, initial=done, desc="warm-up", disable=not self.progress)

        def tick(_segmenter: Any) -> dict[str, float]:  # fit's per-step hook: the progress bar
            bar.update(1)
            return {}
        try:
            while done < total:
                n = min(piece, total - done)
                res = fit(seg, bank.images, bank.priors, bank.phrases, targets, steps=n,
                          alt_priors=bank.distractors, num_workers=self.cfg.num_workers,
                          objects=bank.objects,
                          batch_size=batch, seed=self.cfg.seed + self.ctx.rank, log_every=10,
                          progress=False, desc="warm-up", eval_fn=tick, eval_every=1)
                done += res.steps
                for rec in res.history:
                    if "loss" in rec:
                        self.logger.scalars("warmup", {k: v for k, v in rec.items() if k != "step"},
                                            int(rec["step"]))
                self.save("warmup", segmenter=seg.state_dict(), warmup_done=done)
        finally:
            bar.close()
        if cache is not None:
            write_warm_start(seg, cache)
        self.quick_eval(step=0, tag="warmup")

    def warmup_cache_file(self, table: Any) -> CacheFile | None:
        """Where the warmed-up segmenter of this config and train ``table`` is shared
        (``warmup_cache``; single process)."""
        if not self.cfg.warmup_cache or self.ctx.enabled:
            return None
        from experiments.config import warmup_key
        from l2l_env.factory import warm_start_cache

        return warm_start_cache(self.cfg.warmup_cache, warmup_key(self.cfg, self.resolved), table)

    def install_start(self) -> None:
        """Make the warmed-up segmenter (its teacher a copy of the student) the env's start of run
        (what ``reset(seed=...)`` restores), reset the env with the run's seed, and checkpoint the
        start of the loop."""
        env, u, seg = self.env, self.env.unwrapped, self.segmenter
        # Burn-in done: the EMA teacher starts the loop as a copy of the warmed-up student (as in
        # Unbiased Teacher), not as an average that still remembers the random initialisation.
        seg.teacher.load_state_dict(seg.model.state_dict())
        warmed = copy.deepcopy(seg.state_dict())
        env.reset(seed=self.cfg.seed)
        # env.state_dict() holds live references to the segmenter's tensors, which the reset
        # inside load_state_dict overwrites: work on a copy.
        state = copy.deepcopy(u.state_dict())
        state["segmenter"] = copy.deepcopy(warmed)
        state["initial_state"] = warmed
        u.load_state_dict(state)
        self.agent = self.make_agent()
        self.recorder.total_steps = 0
        self.stats = PseudoLabelStats()
        self.checkpoint_loop(0, {"env_steps": 0, "updates": 0})

    def restore_loop(self) -> None:
        st = self.state
        self.env.reset(seed=self.cfg.seed)  # arms the wrappers; the state below replaces it all
        self.env.unwrapped.load_state_dict(st["env"])
        if self.agent is None:  # else the checkpoint's agent, loaded by prepare
            self.agent = self.make_agent()
        self.stats = PseudoLabelStats.from_state(st["stats"])
        self.recorder.total_steps = int(st["loop_done"])
        self.rollout_counters = dict(st["rollout"])
        set_rng_state(st["rng"])

    def saved_agent(self, folder: Path) -> Any:
        """The agent of the checkpoint to resume from (a clear error when it is missing or
        corrupt, before any long work)."""
        import agents

        try:
            return agents.load(folder)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"cannot resume {self.out}: the agent of its checkpoint cannot be "
                             f"loaded ({err}); restore {folder}, or start again with --overwrite"
                             ) from None

    def make_agent(self):
        import agents

        return agents.make(self.cfg.agent, **self.resolved["agent_kwargs"])

    # ------------------------------------------------------------------ loop
    def checkpoint_loop(self, done: int, rollout: dict[str, int]) -> None:
        root = agent_root(self.out, self.ctx.rank)
        agent_dir = save_agent(self.agent, root, done) if self.agent.savable else None
        self.rollout_counters = dict(rollout)
        # Saved relative to the run folder, so that a moved or copied folder resumes from anywhere.
        saved_dir = os.path.relpath(agent_dir, self.out) if agent_dir is not None else None
        self.save("loop", env=self.env.unwrapped.state_dict(), agent_dir=saved_dir, loop_done=done,
                  rollout=dict(rollout), stats=self.stats.state_dict())
        if agent_dir is not None:
            prune_agents(root, agent_dir)

    def rollout_progress(self) -> dict[str, int]:
        """The agent's learning counters (or the env steps, for agents that keep none)."""
        counters = self.agent.counters()
        return dict(counters) if counters is not None else {"env_steps": self.recorder.total_steps,
                                                            "updates": 0}

    def loop(self) -> None:
        total = int(self.resolved["loop_steps"])
        chunk = int(self.resolved["chunk_steps"])
        done = int(self.state.get("loop_done", 0))
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        bar = tqdm(total=total, initial=done, desc=f"self-evolving loop ({self.cfg.agent})",
                   disable=not self.progress)

        def on_step(step: int) -> None:
            bar.update(1)
            if kill_at and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        self.recorder.on_step = on_step
        eval_every = self.cfg.eval_every
        try:
            while done < total:
                n = min(chunk, total - done)
                self.run_chunk(n)
                records = self.recorder.drain()
                self.log_windows(records, done)
                point = self.stats.add(records)
                done += n
                bar.set_postfix(cov=f"{point.get('coverage', 0):.2f}",
                                prec=f"{point.get('pl_precision', 0):.2f}", refresh=False)
                if eval_every and self.ctx.is_main and (done // eval_every) > ((done - n) // eval_every):
                    self.quick_eval(step=done, tag="loop")
                self.checkpoint_loop(done, self.rollout_progress())
        finally:
            bar.close()
            self.recorder.on_step = None

    def run_chunk(self, n: int) -> None:
        agent, rec = self.agent, self.recorder
        obs = self.env.unwrapped.current_observation()
        if agent.is_learner:
            # Go on from the env's current state (the same on a fresh and a resumed run).
            agent.continue_from(rec, obs, self.rollout_counters)
            agent.learn(rec, n, writer=self.logger.writer)
            return
        for _ in range(n):
            obs, _, terminated, truncated, _ = rec.step(agent.act(obs, deterministic=True))
            if terminated or truncated:
                obs, _ = rec.reset()

    def log_windows(self, records: list[dict[str, float]], start: int) -> None:
        """TensorBoard scalars per window of ``update_interval`` steps."""
        if self.logger.writer is None or not records:
            return
        k = int(self.resolved["env"]["update_interval"])
        for i in range(0, len(records), k):
            window = records[i:i + k]
            keys = {key for r in window for key in r if key != "updated"}
            means = {key: float(np.mean([r[key] for r in window if key in r])) for key in keys}
            self.logger.scalars("loop", means, start + i + len(window))

    # ------------------------------------------------------------------ end
    def finish_training(self) -> None:
        """Equalise batch-norm buffers across ranks, save the final segmenter and agent, and
        checkpoint the start of evaluation."""
        seg = self.segmenter
        D.sync_buffers(seg, self.ctx)
        digests = D.gather(D.parameter_digest(seg.model), self.ctx)
        shards = D.gather(self.data_info.get("shard", {}), self.ctx)
        self.dist_info = {"world_size": self.ctx.world_size, "backend": self.ctx.backend,
                          "param_digests": digests, "in_sync": len(set(digests)) == 1,
                          "shards": shards} if self.ctx.enabled else None
        if self.ctx.is_main:
            seg.save(self.out / O.SEGMENTER)
            if self.agent is not None and self.agent.savable:
                save_agent_dir(self.agent, self.out / O.AGENT)
        self.save("eval", segmenter=seg.state_dict(), stats=self.stats.state_dict(),
                  loop_done=self.stats.steps, dist_info=self.dist_info)
        if self.ctx.is_main:
            prune_agents(agent_root(self.out, self.ctx.rank), None)

    def quick_eval(self, step: int, tag: str) -> None:
        """A fast evaluation on ``eval_subset`` samples of the first eval split, with pictures."""
        if not self.ctx.is_main or self.logger.writer is None:
            return
        from l2l_env.evaluation import evaluate_segmenter

        split = self.resolved["eval_splits"][0]
        m = evaluate_segmenter(self.segmenter, self.eval_data[split], batch_size=self.cfg.eval_batch,
                               max_samples=self.cfg.eval_subset)
        self.logger.scalars(f"eval_quick/{split}", {k: m[k] for k in METRIC_KEYS}, step)
        self.log_images(step)

    def log_images(self, step: int) -> None:
        n = self.cfg.log_images
        if not n or self.logger.writer is None:
            return
        if self.semi and self.recorder is not None and self.recorder.recent:
            recent = list(self.recorder.recent)[-n:]
            pic = selection_panels(self.segmenter, self.env.unwrapped.loop_bank, recent)
            self.logger.image("samples/unlabeled_selection", pic, step)
        bank = self.bank
        rows = list(range(min(n, len(bank))))
        pic = eval_panels(self.segmenter, bank.images[rows], bank.priors[rows],
                          [bank.phrases[r] for r in rows], bank.masks[rows])
        self.logger.image("samples/labeled", pic, step)

    def write_pictures(self) -> None:
        """``OUT/pseudo_label_quality.png`` and ``OUT/samples.png`` (semi-supervised runs)."""
        from PIL import Image

        from experiments.pictures import quality_plot, samples_picture

        curves = self.stats.curves
        if any("pl_iou_label" in c for c in curves):
            title = f"{self.cfg.dataset}, {self.cfg.label_ratio:.0%} labels, agent {self.cfg.agent}"
            quality_plot(curves, self.out / O.QUALITY_PLOT, title)
        env = self.env.unwrapped
        recent = list(self.recorder.recent) if self.recorder is not None else []
        if recent and env.config.diagnostics:
            truths = [env.diagnostic_mask(int(c["row"])) for c in recent]
            pic = samples_picture(self.segmenter, env.loop_bank, recent, truths)
            Image.fromarray(pic).save(self.out / O.SAMPLES)

    def evaluate(self, t_wall: float) -> dict[str, Any]:
        from l2l_env.evaluation import evaluate_segmenter

        metrics: dict[str, dict[str, float]] = {}
        step = int(self.resolved["loop_steps"])
        if self.ctx.is_main:
            with self.timed("eval"):
                splits = self.resolved["eval_splits"]
                for split in tqdm(splits, desc="evaluation", disable=not self.progress, leave=False):
                    m = evaluate_segmenter(self.segmenter, self.eval_data[split],
                                           batch_size=self.cfg.eval_batch)
                    metrics[split] = {k: float(v) for k, v in m.items()}
                    self.logger.scalars(f"eval/{split}", metrics[split], step)
                self.log_images(step)
                if self.semi:
                    self.write_pictures()
        D.barrier(self.ctx)
        self.timing["wall_s_this_process"] = time.perf_counter() - t_wall
        steps = self.stats.steps
        loop_s = self.timing.get("loop_s", 0.0)
        timing = dict(self.timing)
        timing["total_s"] = sum(v for k, v in self.timing.items() if k.endswith("_s")
                                and k not in ("wall_s_this_process", "total_s"))
        if steps:
            timing["loop_s_per_1000_samples"] = 1000.0 * loop_s / steps
        timing["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        results = {"config": self.config_dict, "metrics": metrics,
                   "pseudo_labels": self.stats.summary(), "timing": timing, "data": self.data_info}
        dist_info = getattr(self, "dist_info", None) or self.state.get("dist_info")
        if dist_info:
            results["distributed"] = dist_info
        if self.ctx.is_main:
            write_json(self.out / O.RESULTS, results)
        self.save("done", stats=self.stats.state_dict(), loop_done=steps)
        return results

