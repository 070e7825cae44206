"""PseudoLabelEnv: pseudo-label selection as a Gymnasium environment with a coupled segmenter."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from l2l_env import factory, labels as L, schema
from l2l_env.bank import concat_banks, pool_to_grid
from l2l_env.config import SEED_LIMIT, EnvConfig, make_config
from l2l_env.data.visualize import OVERLAY_COLOURS, captioned_panel, overlay
from l2l_env.evaluation import EvalSplit, evaluate_segmenter, load_eval_split
from l2l_env.loop_data import LoopData, load_table_of
from l2l_env.predictions import Prediction, PredictionWindow, text_embeddings
from l2l_env.rewards import Reward, StepContext, make_reward
from l2l_env.schedule import VisitSchedule
from l2l_env.self_training import SelfTrainer
from segmenter.engine import Segmenter

MAP_KEYS = schema.MAP_KEYS


class PseudoLabelEnv(gym.Env):
    """Choose which pixels of an unlabeled sample become pseudo-labels for a self-evolving
    segmenter.

    ## Description
    The unlabeled train samples of a referring-segmentation data set (SynthRef by default) are
    visited one per step in a seeded order. The state bundles the MLLM prior (a soft proposal from a
    grounded box), the student's and the EMA teacher's predictions and their uncertainty, at an
    action grid of G x G cells. The agent *constructs* each sample's pseudo-label cell by cell
    (:mod:`l2l_env.labels`). Every ``update_interval`` steps the coupled segmenter trains on labeled
    data plus the constructed pseudo-labels (ignored pixels are skipped by the loss), its EMA
    teacher updates, and later states reflect the new segmenter: segmenter and pseudo-labels
    evolve together.

    With ``calibration_every = N > 0`` every N-th step visits a held-out *labeled* sample of the
    probe instead (it looks like any other sample in the observation); its constructed label is
    not trained on but scored against its own mask by the ``heldout`` reward. ``info["scored"]``
    says which steps carry such a score.

    ## Action Space
    ``action="construct"`` (default): ``MultiDiscrete([4] * G*G)``, flat in row-major grid order,
    per cell 0 ignore, 1 background, 2 foreground, 3 the teacher's pixel labels.
    ``action="select"`` (the selection ablation): ``MultiBinary(G*G)``, 1 keeps the cell with the
    label of ``label_source`` (teacher, prior or their fusion). Any numeric dtype with exact
    integer values in range is accepted; other shapes, values or NaN raise ``ValueError``.
    ``l2l_env.wrappers`` gives per-cell weights and two-threshold forms of ``select``.

    ## Observation Space
    ``Dict`` of float32, channel-first, at the action grid:
    ``prior``, ``student``, ``teacher`` (1, G, G) in [0, 1]; ``uncertainty`` (1, G, G) in [0, 1]
    (the larger of the teacher's normalised binary entropy and the student-teacher disagreement);
    ``text`` (D,) in [-1, 1] (L2-normalised mean of the phrase's token features); ``no_prior`` (1,)
    in {0, 1} (the MLLM gave no box: the prior map is then flat 0.5); ``progress`` (1,) in [0, 1]
    (steps since the start of the run over ``progress_horizon``); with ``include_image=True`` also
    ``image`` (3, G, G) in [0, 1]; with ``include_prior_score=True`` also ``prior_score`` (1,) in
    [0, 1] (the provider's confidence in its grounding: an MLLM's token probability, a detector's
    score; 0 without a prior); with ``oracle_obs=True`` (analysis only: the oracle agents)
    also ``truth`` (1, G, G), the ground-truth foreground fraction per cell.

    ## Rewards
    By name (``l2l_env.rewards``): ``heldout`` (default: the exact per-cell score of the
    constructed label on the held-out labeled samples of the loop), ``hybrid`` = ``agreement``
    (per selected cell, the agreement of prior, teacher and student with its label, minus a
    margin) + ``utility`` (on update steps, the change of the student's mIoU on a held-out labeled
    probe). ``oracle`` (IoU with the ground truth) and ``oracle_obs`` are for analysis only;
    ``info["oracle"]`` says when either is in use. No other reward and nothing that trains the
    segmenter reads an unlabeled sample's ground truth.

    ## Starting State and Episode End
    ``reset(seed=s)`` restores the start of the run exactly (segmenter, teacher, optimiser, sample
    order drawn from ``s``); ``reset()`` without a seed starts a new episode and keeps the
    segmenter as it is. Episodes are truncated after ``episode_steps`` steps, never terminated.

    ## Registered Configurations
    ``l2l/PseudoLabel-v0`` (SynthRef) with the defaults of :class:`l2l_env.config.EnvConfig`, and
    ``l2l/PseudoLabel-RefCOCO-v0``, ``-RefCOCOplus-v0``, ``-RefCOCOg-v0`` (``data_root=`` required);
    every field is a ``gym.make`` keyword argument. ``segmenter=`` hands in a
    :class:`segmenter.Segmenter` object.

    ## Built from parts
    ``gym.make`` loads the parts with :mod:`l2l_env.factory` (segmenter, banks, checkpoint,
    warm-up); :meth:`from_parts` takes them already loaded: the segmenter, a
    :class:`~l2l_env.loop_data.LoopData` and optionally a reward object. Segmenter updates are
    the :class:`~l2l_env.self_training.SelfTrainer`'s (``env.trainer``), the order of visits the
    :class:`~l2l_env.schedule.VisitSchedule`'s, the student's and the teacher's maps the
    :class:`~l2l_env.predictions.PredictionWindow`'s (``env.predictions``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, config: dict[str, Any] | EnvConfig | None = None,
                 render_mode: str | None = None,
                 segmenter: Segmenter | dict[str, Any] | None = None, data: LoopData | None = None,
                 reward_fn: Reward | None = None, **kwargs: Any) -> None:
        if isinstance(segmenter, dict):  # ``segmenter={...}`` is the config field (overrides)
            kwargs["segmenter"], segmenter = segmenter, None
        self.config = cfg = make_config(config, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}; expected one of "
                             f"{self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        if data is not None and segmenter is None:
            raise ValueError("PseudoLabelEnv(data=...) needs segmenter= too (the one the banks "
                             "were built for)")
        if data is not None and (cfg.checkpoint or cfg.warmup_steps):
            raise ValueError("from_parts takes a ready segmenter: load the checkpoint / warm up "
                             "with l2l_env.factory before (config checkpoint="
                             f"{cfg.checkpoint!r}, warmup_steps={cfg.warmup_steps})")
        # gym.make: the train table is read once, for the segmenter's object heads and the banks
        table = load_table_of(cfg, "train") if data is None else None
        self.segmenter = segmenter if segmenter is not None else \
            factory.build_segmenter(cfg, table=table)
        self.image_size = int(self.segmenter.config.image_size)
        self.grid_size = G = cfg.grid_size
        if self.image_size % G:
            raise ValueError(f"grid_size={G} must divide the segmenter's "
                             f"image_size={self.image_size}")
        self._scale = self.image_size // G
        self.reward_fn = reward_fn if reward_fn is not None else \
            make_reward(cfg.reward, **cfg.reward_options)
        if data is None:  # gym.make: load the parts the config names
            data = factory.prepare_parts(cfg, self.segmenter, table)
        self._started = False
        self._bind(data)
        self._initial_state = copy.deepcopy(self.segmenter.state_dict())
        text_dim = int(text_embeddings(self.segmenter, [self.unlabeled.phrases[0]]).shape[1])
        grid_map = spaces.Box(0.0, 1.0, (1, G, G), np.float32)
        obs_spaces: dict[str, spaces.Space] = {k: grid_map for k in MAP_KEYS}
        obs_spaces[schema.TEXT_KEY] = spaces.Box(-1.0, 1.0, (text_dim,), np.float32)
        for key in schema.VECTOR_KEYS:
            obs_spaces[key] = spaces.Box(0.0, 1.0, (1,), np.float32)
        if cfg.include_image:
            obs_spaces[schema.IMAGE_KEY] = spaces.Box(0.0, 1.0, (3, G, G), np.float32)
        if cfg.include_prior_score:
            obs_spaces[schema.PRIOR_SCORE_KEY] = spaces.Box(0.0, 1.0, (1,), np.float32)
        if cfg.oracle_obs:
            obs_spaces[schema.TRUTH_KEY] = grid_map
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = L.action_space(cfg.action, G)
        self._last_selection: np.ndarray | None = None
        self._eval_splits: dict[str, EvalSplit] = {}
        self.last_construction: dict[str, Any] | None = None
        """The last step's loop row, choice codes, label, weight and teacher map (for pictures)."""

    @classmethod
    def from_parts(cls, segmenter: Segmenter, data: LoopData, reward_fn: Reward | None = None,
                   config: dict[str, Any] | EnvConfig | None = None, render_mode: str | None = None,
                   **kwargs: Any) -> PseudoLabelEnv:
        """An env over parts that are already loaded: the segmenter (warmed up as wanted), the
        banks and vault of :func:`l2l_env.loop_data.load_loop_data`, and a reward object (default:
        the config's). ``config``/``kwargs`` give the remaining settings."""
        return cls(config, render_mode=render_mode, segmenter=segmenter, data=data,
                   reward_fn=reward_fn, **kwargs)

    def _bind(self, data: LoopData) -> None:
        """Use ``data``: the banks, the loop bank (the unlabeled pool, then with calibration the
        held-out labeled probe, whose masks are labeled ground truth) and the self-trainer."""
        cfg = self.config
        if cfg.calibration_every and len(data.probe) == 0:
            raise ValueError(f"calibration_every={cfg.calibration_every} needs held-out labeled "
                             "samples, but the data's probe is empty")
        self.data = data
        self.labeled, self.probe, self.unlabeled = data.labeled, data.probe, data.unlabeled
        self.label_split = data.label_split
        self.num_unlabeled = len(data.unlabeled)
        calibrate = cfg.calibration_every > 0
        self.loop_bank = concat_banks(data.unlabeled, data.probe) if calibrate else data.unlabeled
        self.trainer = SelfTrainer(self.segmenter, data.labeled, data.probe, self.loop_bank,
                                   update_steps=cfg.update_steps, labeled_batch=cfg.labeled_batch,
                                   pseudo_weight=cfg.pseudo_weight, num_workers=cfg.num_workers,
                                   pseudo_prior_dropout=cfg.pseudo_prior_dropout)
        self.predictions = PredictionWindow(self.segmenter, self.loop_bank, grid_size=cfg.grid_size,
                                            update_interval=cfg.update_interval,
                                            num_workers=cfg.num_workers)

    def shard(self, rank: int, world_size: int) -> dict[str, int]:
        """Keep only this rank's share of the unlabeled pool (every ``world_size``-th referred
        object from ``rank``), ground truth with it; call before the first ``reset``. (A run can
        also hand the env a sharded :class:`LoopData` from the start.)"""
        if self._started:
            raise RuntimeError("shard() after the first reset(): the run has already started")
        data, info = self.data.shard(rank, world_size)  # checks the rank
        self._bind(data)
        return info

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= seed < SEED_LIMIT):
            raise ValueError(f"reset(seed={seed!r}): seed must be None or an int in "
                             f"[0, {SEED_LIMIT}); the env is unchanged")
        super().reset(seed=seed)
        if options:
            unknown = sorted(set(options) - {"restart"})
            if unknown:
                raise ValueError(f"unknown reset option(s) {unknown}; known: ['restart']")
        if seed is not None or not self._started or (options or {}).get("restart"):
            self._restart()
        self._episode_step = 0
        self._last_selection = None
        return self._observation(), {schema.SAMPLE_ID: self._current_sample_id(),
                                     schema.GLOBAL_STEP: self._global_step}

    def _restart(self) -> None:
        """Back to the start of the run: segmenter state, sample order, counters."""
        self.segmenter.load_state_dict(copy.deepcopy(self._initial_state))
        rng = np.random.default_rng(self.np_random.integers(2**63))
        calib_rng = np.random.default_rng(self.np_random.integers(2**63))
        probe_rows = [[r + self.num_unlabeled for r in g] for g in self.probe.ref_rows]
        self._visits = VisitSchedule(self.unlabeled.ref_rows, probe_rows,
                                     self.config.calibration_every, rng, calib_rng)
        self._global_step = 0
        self.trainer.reset()
        self.predictions.restart()
        self._started = True

    def step(self, action: np.ndarray
             ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        codes_or_sel = self._validate_action(action)
        pos = self._global_step
        row = self._visits.row_at(pos)
        bank = self.loop_bank
        pred = self.predictions_at(pos)
        G = self.grid_size
        candidate = self._candidate(row, pred)
        label = self._construct(codes_or_sel.reshape(G, G), pred, candidate)
        calibration = self.is_calibration(row)
        selection = label.selected.ravel()
        ctx = StepContext(selection=selection,
                          labels=(label.cell_label.ravel() > 0.5).astype(np.float32),
                          prior=bank.prior_grid[row].ravel(),
                          student=pred.student_grid.ravel(), teacher=pred.teacher_grid.ravel(),
                          no_prior=bool(bank.no_prior[row]), codes=label.codes.ravel(),
                          teacher_full=pred.teacher_full,
                          heldout_truth=self._calibration_mask(row) if calibration else None,
                          truth=(self._truth_cells(row) if self.reward_fn.uses_ground_truth
                                 else None),
                          extras=self._step_extras(row, pred, label, calibration))
        result = self.reward_fn.step(ctx)
        if not calibration:
            self.trainer.add(row, label.label, label.weight)
        self._last_selection = label.codes
        self.last_construction = {"row": row, "codes": label.codes, "label": label.label,
                                  "weight": label.weight, "teacher": pred.teacher_full}
        reward = float(result.value)
        info: dict[str, Any] = {
            schema.SAMPLE_ID: bank.sample_ids[row],
            schema.GLOBAL_STEP: pos,
            schema.CALIBRATION: calibration,
            schema.SCORED: result.choice_scores is not None,
            schema.COVERAGE: float(selection.mean()),
            schema.LABEL_FG_FRACTION: float(ctx.labels[selection].mean()) if selection.any()
            else 0.0,
            schema.REWARD_COMPONENTS: dict(result.components),
            schema.CELL_REWARDS: result.cell_rewards,
            schema.ORACLE: self.uses_oracle,
            schema.UPDATED: False,
        }
        if result.choice_scores is not None:
            info[schema.CELL_SCORES] = result.choice_scores
        if self.data.vault.available and not calibration:
            info.update(self._diagnostics(row, label, pred, candidate))
        self._global_step += 1
        self._episode_step += 1
        if self._global_step % self.config.update_interval == 0:
            # the pool order's stream also draws the update's labeled batches
            stats = self.trainer.update(self._visits.rng)
            self.predictions.clear()  # stale after the update
            delayed = self.reward_fn.on_update(stats["probe_delta"])
            reward += delayed
            info[schema.REWARD_COMPONENTS]["utility"] = float(delayed)
            info[schema.UPDATED] = True
            info[schema.SEGMENTER] = stats
        obs = self._observation()
        truncated = self._episode_step >= self.config.episode_steps
        return obs, reward, False, truncated, info

    @property
    def uses_oracle(self) -> bool:
        """Whether anything of this env reads unlabeled ground truth for acting or reward."""
        return bool(self.reward_fn.uses_ground_truth or self.config.oracle_obs)

    def diagnostic_mask(self, row: int) -> np.ndarray:
        """The ground-truth mask of loop row ``row``, for pictures and reports only (unlabeled
        rows need ``diagnostics=True``); nothing that trains or rewards calls it."""
        if self.is_calibration(row):
            return self._calibration_mask(row)
        return self.data.vault.mask(row)

    def is_calibration(self, row: int) -> bool:
        """Whether loop row ``row`` is a held-out labeled sample (not an unlabeled one)."""
        return row >= self.num_unlabeled

    def _calibration_mask(self, row: int) -> np.ndarray:
        """The labeled mask of a held-out calibration row (labeled ground truth: allowed)."""
        return self.probe.masks[row - self.num_unlabeled]

    def _construct(self, action: np.ndarray, pred: Prediction, candidate: np.ndarray
                   ) -> L.ConstructedLabel:
        """The pseudo-label the action builds from the step's predictions and its
        :meth:`_candidate` label."""
        if self.config.action == "construct":
            return L.construct(action, pred.teacher_full)
        return L.from_selection(action.astype(bool), candidate, self.config.label_source)

    def _step_extras(self, row: int, pred: Prediction, label: L.ConstructedLabel,
                     calibration: bool) -> dict[str, Any]:
        """What the reward asked for by ``needs`` (:data:`l2l_env.rewards.STEP_EXTRAS`)."""
        needs = self.reward_fn.needs
        if not needs:
            return {}
        bank = self.loop_bank
        give = {"image": lambda: bank.images[row], "phrase": lambda: bank.phrases[row],
                "sample_id": lambda: bank.sample_ids[row], "prior_full": lambda: bank.priors[row],
                "student_full": lambda: pred.student_full, "label_full": lambda: label.label,
                "weight_full": lambda: label.weight, "calibration": lambda: calibration}
        return {name: give[name]() for name in needs}

    def _candidate(self, row: int, pred: Prediction) -> np.ndarray:
        """The soft label a kept cell takes: the teacher's map (``construct``'s ``teacher``
        choice), or in the ``select`` form the map of ``label_source``."""
        source = "teacher" if self.config.action == "construct" else self.config.label_source
        if source == "teacher":
            return pred.teacher_full
        prior = self.loop_bank.priors[row]
        return prior if source == "prior" else 0.5 * (pred.teacher_full + prior)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None

        row = self._visits.row_at(self._global_step)
        pred = self.predictions_at(self._global_step)
        bank = self.loop_bank
        image = bank.images[row]
        panels = [image,
                  overlay(image, bank.priors[row], OVERLAY_COLOURS["prior"]),
                  overlay(image, pred.student_full, OVERLAY_COLOURS["prediction"])]
        if self._last_selection is not None:
            kept = (self._last_selection != L.IGNORE).astype(np.float32)
            sel = L.upsample_cells(kept, self._scale)
            panels.append(overlay(image, sel, OVERLAY_COLOURS["selection"]))
        scale = max(1, 192 // self.image_size)
        caption = f"{bank.phrases[row]}  (prior | student | last selection)"
        return np.asarray(captioned_panel(panels, caption, scale=scale))

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """A deep-copied snapshot of everything needed to continue this run exactly (segmenter,
        RNGs, position, pending selections); see :meth:`load_state_dict`."""
        if not self._started:
            raise RuntimeError("state_dict() before the first reset(): nothing to save yet")
        return copy.deepcopy({
            "segmenter": self.segmenter.state_dict(),
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
            **self._visits.state_dict(),
            "global_step": self._global_step,
            "episode_step": self._episode_step,
            **self.trainer.state_dict(),
            "initial_state": self._initial_state,
        })  # a snapshot: later training must not change what was saved

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the next step is the one the saved run would take)."""
        self.reset(seed=0)
        self.segmenter.load_state_dict(state["segmenter"])
        self.np_random.bit_generator.state = state["np_random"]
        self._visits.load_state_dict(state)
        self._global_step = int(state["global_step"])
        self._episode_step = int(state["episode_step"])
        self.trainer.load_state_dict(state)
        self._initial_state = state["initial_state"]
        self.predictions.clear()

    def current_observation(self) -> dict[str, np.ndarray]:
        """The observation of the sample the next step acts on (no side effects on the run)."""
        if not self._started:
            raise RuntimeError("current_observation() before the first reset()")
        return self._observation()

    def evaluate(self, split: str = "val", batch_size: int = 256) -> dict[str, float]:
        """Metrics of the current student on an evaluation split of the same data set and priors."""

        if split not in self._eval_splits:  # loaded once per env
            self._eval_splits[split] = load_eval_split(self.config, split)
        return evaluate_segmenter(self.segmenter, self._eval_splits[split], batch_size=batch_size)

    # ----------------------------------------------------------------- internals
    def _validate_action(self, action: np.ndarray) -> np.ndarray:
        """The action as a flat int array; errors say what the action space expects."""
        a = np.asarray(action)
        n = self.grid_size * self.grid_size
        high = len(L.CHOICES) - 1 if self.config.action == "construct" else 1
        expected = (f"MultiDiscrete([{high + 1}] * {n}) of codes 0..{high} "
                    f"({', '.join(L.CHOICES)})" if high > 1 else f"MultiBinary({n}) of 0/1")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"action dtype {a.dtype} is not numeric; expected {expected}")
        if a.shape != (n,):
            raise ValueError(f"action shape {a.shape} is wrong; expected ({n},) (flat over the "
                             f"{self.grid_size}x{self.grid_size} grid: {expected})")
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                raise ValueError(f"action contains NaN or infinite values; expected {expected}")
            if not (a == np.round(a)).all():
                raise ValueError(f"action values must be whole numbers; expected {expected} "
                                 f"(got values such as {a[a != np.round(a)][:3]})")
        bad = (a < 0) | (a > high)
        if bad.any():
            raise ValueError(f"action values out of range (got values such as {a[bad][:3]}); "
                             f"expected {expected}")
        return a.astype(np.int8)

    def _current_sample_id(self) -> str:
        return self.loop_bank.sample_ids[self._visits.row_at(self._global_step)]

    def predictions_at(self, pos: int) -> Prediction:
        """The student's and the teacher's maps of the sample of step ``pos`` (computed for
        its whole window of ``update_interval`` steps; stale after a segmenter update)."""
        return self.predictions.at(pos, self._visits)

    def _observation(self) -> dict[str, np.ndarray]:
        pos = self._global_step
        row = self._visits.row_at(pos)
        pred = self.predictions_at(pos)
        teacher, student = pred.teacher_grid, pred.student_grid
        p = np.clip(teacher, 1e-6, 1 - 1e-6)
        entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        uncertainty = np.maximum(entropy, np.abs(student - teacher))
        bank = self.loop_bank
        obs = {
            schema.PRIOR_KEY: bank.prior_grid[row][None],
            schema.STUDENT_KEY: student[None],
            schema.TEACHER_KEY: teacher[None],
            schema.UNCERTAINTY_KEY: uncertainty[None],
            schema.TEXT_KEY: pred.text,
            schema.NO_PRIOR_KEY: np.array([float(bank.no_prior[row])]),
            schema.PROGRESS_KEY: np.array([min(1.0, pos / self.config.progress_horizon)]),
        }
        if self.config.include_prior_score:
            obs[schema.PRIOR_SCORE_KEY] = np.array([bank.prior_score[row]])
        if self.config.include_image:
            img = bank.images[row].astype(np.float32) / 255.0
            obs[schema.IMAGE_KEY] = pool_to_grid(np.moveaxis(img, -1, 0), self.grid_size)
        if self.config.oracle_obs:  # analysis only: info["oracle"] is True
            mask = self.diagnostic_mask(row)
            obs[schema.TRUTH_KEY] = L.cell_fraction(mask.astype(np.float32), self.grid_size)[None]
        return {k: np.clip(v, 0.0 if k != schema.TEXT_KEY else -1.0, 1.0).astype(np.float32)
                for k, v in obs.items()}

    def _truth_cells(self, row: int) -> Callable[[], np.ndarray]:
        def truth() -> np.ndarray:
            mask = self.diagnostic_mask(row)
            return L.cell_fraction(mask.astype(np.float32), self.grid_size).ravel()
        return truth

    def _diagnostics(self, row: int, label: L.ConstructedLabel, pred: Prediction,
                     candidate: np.ndarray) -> dict[str, Any]:
        """Pseudo-label quality against ground truth: reported, never learned from. The IoU of the
        prior, the teacher and the constructed label (ignored pixels count as not foreground)
        with the mask, the accuracy of the labeled pixels, and ``pl_cell_correct``: per cell, the
        fraction of pixels that the candidate label (:meth:`_candidate`) gets right."""
        gt = self.data.vault.mask(row)
        sel = label.weight > 0.5
        lab = label.label > 0.5
        n_sel = int(sel.sum())
        correct = int((sel & (lab == gt)).sum())
        fg_sel = sel & lab
        n_gt = int(gt.sum())

        def iou(a: np.ndarray) -> float:
            union = int((a | gt).sum())
            return float((a & gt).sum() / union) if union else 1.0

        return {
            schema.PL_PRECISION: correct / n_sel if n_sel else 0.0,
            schema.PL_FG_PRECISION: float((fg_sel & gt).sum() / fg_sel.sum()) if fg_sel.any()
            else 0.0,
            schema.PL_RECALL: float((fg_sel & gt).sum() / n_gt) if n_gt else 0.0,
            schema.PL_SELECTED_PIXELS: n_sel,
            schema.PL_CORRECT_PIXELS: correct,
            schema.PL_IOU_PRIOR: iou(self.loop_bank.priors[row] > 0.5),
            schema.PL_IOU_TEACHER: iou(pred.teacher_full > 0.5),
            schema.PL_IOU_LABEL: iou(fg_sel),
            schema.PL_CELL_CORRECT: L.cell_fraction(((candidate > 0.5) == gt).astype(np.float32),
                                               self.grid_size).ravel(),
        }

