"""PseudoLabelEnv: pseudo-label selection as a Gymnasium environment with a coupled segmenter."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from l2l_env.bank import GroundTruthVault, SampleBank, build_bank, pool_to_grid
from l2l_env.config import EnvConfig, make_config
from l2l_env.data import RefSplit, label_split, load_table
from l2l_env.rewards import StepContext, make_reward

MAP_KEYS = ("prior", "student", "teacher", "uncertainty")


class PseudoLabelEnv(gym.Env):
    """Choose which pixels of an unlabeled sample become pseudo-labels for a self-evolving segmenter.

    ## Description
    The unlabeled train samples of a referring-segmentation data set (SynthRef by default) are
    visited one per step in a seeded order. The state bundles the MLLM prior (a soft proposal from a
    grounded box), the student's and the EMA teacher's predictions and their uncertainty, at an
    action grid of G x G cells. The agent chooses the cells whose pixels become pseudo-labels; the
    label *value* of a selected cell comes from ``label_source`` (teacher, prior or their fusion).
    Every ``update_interval`` steps the coupled segmenter trains on labeled data plus the selected
    pseudo-labels (unselected pixels are ignored by the loss), its EMA teacher updates, and later
    states reflect the new segmenter: segmenter and pseudo-labels evolve together.

    ## Action Space
    ``MultiBinary(G*G)``, flat in row-major grid order (SB3 supports only flat MultiBinary). Any
    numeric dtype whose values are exactly 0 or 1 is accepted; other shapes, values or NaN raise
    ``ValueError``. ``l2l_env.wrappers`` gives per-cell weights and two-threshold forms.

    ## Observation Space
    ``Dict`` of float32, channel-first, at the action grid:
    ``prior``, ``student``, ``teacher`` (1, G, G) in [0, 1]; ``uncertainty`` (1, G, G) in [0, 1]
    (the larger of the teacher's normalised binary entropy and the student-teacher disagreement);
    ``text`` (D,) in [-1, 1] (L2-normalised mean of the phrase's token features); ``no_prior`` (1,)
    in {0, 1} (the MLLM gave no box: the prior map is then flat 0.5); ``progress`` (1,) in [0, 1]
    (steps since the start of the run over ``progress_horizon``); with ``include_image=True`` also
    ``image`` (3, G, G) in [0, 1].

    ## Rewards
    By name (``l2l_env.rewards``): ``hybrid`` (default) = ``agreement`` (per selected cell, the
    agreement of prior, teacher and student with its label, minus a margin) + ``utility`` (on update
    steps, the change of the student's mIoU on a held-out labeled probe). ``oracle`` (IoU with the
    ground truth) is for analysis only; ``info["oracle"]`` says when it is in use. No other reward
    and nothing that trains the segmenter reads an unlabeled sample's ground truth.

    ## Starting State and Episode End
    ``reset(seed=s)`` restores the start of the run exactly (segmenter, teacher, optimiser, sample
    order drawn from ``s``); ``reset()`` without a seed starts a new episode and keeps the
    segmenter as it is. Episodes are truncated after ``episode_steps`` steps, never terminated.

    ## Registered Configurations
    ``l2l/PseudoLabel-v0`` with the defaults of :class:`l2l_env.config.EnvConfig`; every field is a
    ``gym.make`` keyword argument. ``segmenter=`` hands in a :class:`segmenter.Segmenter` object.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, config: dict[str, Any] | EnvConfig | None = None,
                 render_mode: str | None = None, segmenter: Any = None, **kwargs: Any) -> None:
        if isinstance(segmenter, dict):  # ``segmenter={...}`` is the config field (overrides)
            kwargs["segmenter"], segmenter = segmenter, None
        self.config = cfg = make_config(config, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}; expected one of "
                             f"{self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.segmenter = segmenter if segmenter is not None else self._build_segmenter(cfg)
        self.image_size = int(self.segmenter.config.image_size)
        self.grid_size = G = cfg.grid_size
        if self.image_size % G:
            raise ValueError(f"grid_size={G} must divide the segmenter's image_size={self.image_size}")
        self._scale = self.image_size // G
        self.reward_fn = make_reward(cfg.reward, **cfg.reward_options)
        self._load_data(cfg)
        if cfg.checkpoint:
            self._load_checkpoint(cfg.checkpoint)
        if cfg.warmup_steps:
            self._warm_up(cfg.warmup_steps)
        self._initial_state = copy.deepcopy(self.segmenter.state_dict())
        text_dim = int(self._text_embeddings([self.unlabeled.phrases[0]]).shape[1])
        grid_map = spaces.Box(0.0, 1.0, (1, G, G), np.float32)
        obs_spaces: dict[str, spaces.Space] = {k: grid_map for k in MAP_KEYS}
        obs_spaces["text"] = spaces.Box(-1.0, 1.0, (text_dim,), np.float32)
        obs_spaces["no_prior"] = spaces.Box(0.0, 1.0, (1,), np.float32)
        obs_spaces["progress"] = spaces.Box(0.0, 1.0, (1,), np.float32)
        if cfg.include_image:
            obs_spaces["image"] = spaces.Box(0.0, 1.0, (3, G, G), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.MultiBinary(G * G)
        self._started = False
        self._last_selection: np.ndarray | None = None

    # ----------------------------------------------------------------- construction
    @staticmethod
    def _build_segmenter(cfg: EnvConfig):
        from segmenter import Segmenter, SegmenterConfig

        overrides = {"device": cfg.device, "seed": cfg.seed, **cfg.segmenter}
        return Segmenter(SegmenterConfig.from_dict(overrides))

    def _load_data(self, cfg: EnvConfig) -> None:
        from l2l_env.priors import load_priors

        data_root = cfg.data_root if cfg.data_root or cfg.dataset != "synthref" else cfg.cache_dir
        table = load_table(cfg.dataset, "train", data_root=data_root, **cfg.data_options)
        priors = load_priors(cfg.dataset, "train", RefSplit(table, "per_sentence"),
                             cfg.prior_provider, cache_dir=cfg.cache_dir, **cfg.prior_options)
        split = label_split(cfg.dataset, table.image_ids, cfg.label_ratio, seed=cfg.split_seed,
                            split_dir=cfg.split_dir)
        if not split.unlabeled:
            raise ValueError(f"label_ratio={cfg.label_ratio} leaves no unlabeled train images")
        self.label_split = split
        S, G = self.image_size, self.grid_size
        labeled = build_bank(table.subset(split.labeled), priors, S, G, proposal=cfg.proposal)
        # Hold a few labeled objects out of training: the probe of the utility reward.
        order = np.random.default_rng(cfg.split_seed).permutation(labeled.num_refs)
        n_probe = min(cfg.probe_size, labeled.num_refs // 4)
        probe_refs, train_refs = order[:n_probe], order[n_probe:]
        self.probe = labeled.take([r for i in probe_refs for r in labeled.ref_rows[i]])
        self.labeled = labeled.take([r for i in train_refs for r in labeled.ref_rows[i]])
        unlabeled = build_bank(table.subset(split.unlabeled), priors, S, G, proposal=cfg.proposal,
                               with_masks=cfg.diagnostics)
        self._truth = GroundTruthVault(unlabeled.masks)
        unlabeled.masks = None  # from here on only the vault holds them
        self.unlabeled: SampleBank = unlabeled

    def _load_checkpoint(self, path: str) -> None:
        from segmenter import Segmenter

        loaded = Segmenter.load(path, text_encoder=self.segmenter.text_encoder)
        self.segmenter.load_state_dict(loaded.state_dict())

    def _warm_up(self, steps: int) -> None:
        from segmenter import fit

        lab = self.labeled
        fit(self.segmenter, lab.images, lab.priors, lab.phrases, lab.masks.astype(np.float32),
            steps=steps, batch_size=max(1, min(32, len(lab))), seed=self.config.seed,
            progress=False, desc="warm-up")

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            unknown = sorted(set(options) - {"restart"})
            if unknown:
                raise ValueError(f"unknown reset option(s) {unknown}; known: ['restart']")
        if seed is not None or not self._started or (options or {}).get("restart"):
            self._restart()
        self._episode_step = 0
        self._last_selection = None
        return self._observation(), {"sample_id": self._current_sample_id(),
                                     "global_step": self._global_step}

    def _restart(self) -> None:
        """Back to the start of the run: segmenter state, sample order, counters."""
        self.segmenter.load_state_dict(copy.deepcopy(self._initial_state))
        self._rng = np.random.default_rng(self.np_random.integers(2**63))
        self._schedule = np.zeros(0, dtype=np.int64)
        self._global_step = 0
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._probe_miou: float | None = None
        self._started = True

    def step(self, action):
        selection = self._validate_action(action)
        pos = self._global_step
        row = self._row_at(pos)
        pred = self._predictions(pos)
        labels_grid, labels_full = self._labels(row, pred)
        ctx = StepContext(selection=selection, labels=labels_grid.ravel(),
                          prior=self.unlabeled.prior_grid[row].ravel(),
                          student=pred["student_grid"].ravel(), teacher=pred["teacher_grid"].ravel(),
                          no_prior=bool(self.unlabeled.no_prior[row]),
                          truth=self._truth_cells(row) if self.reward_fn.uses_ground_truth else None)
        result = self.reward_fn.step(ctx)
        sel_grid = selection.reshape(self.grid_size, self.grid_size)
        self._pending.append((row, sel_grid, labels_full))
        self._last_selection = sel_grid
        reward = float(result.value)
        info: dict[str, Any] = {
            "sample_id": self.unlabeled.sample_ids[row],
            "global_step": pos,
            "coverage": float(selection.mean()),
            "label_fg_fraction": float(labels_grid.ravel()[selection].mean()) if selection.any() else 0.0,
            "reward_components": dict(result.components),
            "cell_rewards": result.cell_rewards,
            "oracle": bool(self.reward_fn.uses_ground_truth),
            "updated": False,
        }
        if self._truth.available:
            info.update(self._diagnostics(row, sel_grid, labels_full))
        self._global_step += 1
        self._episode_step += 1
        if self._global_step % self.config.update_interval == 0:
            stats = self._update()
            delayed = self.reward_fn.on_update(stats["probe_delta"])
            reward += delayed
            info["reward_components"]["utility"] = float(delayed)
            info["updated"] = True
            info["segmenter"] = stats
        obs = self._observation()
        truncated = self._episode_step >= self.config.episode_steps
        return obs, reward, False, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from l2l_env.data.visualize import OVERLAY_COLOURS, captioned_panel, overlay

        row = self._row_at(self._global_step)
        pred = self._predictions(self._global_step)
        image = self.unlabeled.images[row]
        panels = [image,
                  overlay(image, self.unlabeled.priors[row], OVERLAY_COLOURS["prior"]),
                  overlay(image, pred["student_full"], OVERLAY_COLOURS["prediction"])]
        if self._last_selection is not None:
            sel = np.kron(self._last_selection.astype(np.float32), np.ones((self._scale,) * 2))
            panels.append(overlay(image, sel, OVERLAY_COLOURS["selection"]))
        scale = max(1, 192 // self.image_size)
        caption = f"{self.unlabeled.phrases[row]}  (prior | student | last selection)"
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
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "schedule": self._schedule.copy(),
            "global_step": self._global_step,
            "episode_step": self._episode_step,
            "pending": [(int(r), s.copy(), t.copy()) for r, s, t in self._pending],
            "probe_miou": self._probe_miou,
            "initial_state": self._initial_state,
        })  # a snapshot: later training must not change what was saved

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the next step is the one the saved run would take)."""
        self.reset(seed=0)
        self.segmenter.load_state_dict(state["segmenter"])
        self.np_random.bit_generator.state = state["np_random"]
        self._rng.bit_generator.state = state["rng"]
        self._schedule = np.asarray(state["schedule"], dtype=np.int64)
        self._global_step = int(state["global_step"])
        self._episode_step = int(state["episode_step"])
        self._pending = [(int(r), np.asarray(s), np.asarray(t)) for r, s, t in state["pending"]]
        self._probe_miou = state["probe_miou"]
        self._initial_state = state["initial_state"]
        self._cache.clear()

    def current_observation(self) -> dict[str, np.ndarray]:
        """The observation of the sample the next step acts on (no side effects on the run)."""
        if not self._started:
            raise RuntimeError("current_observation() before the first reset()")
        return self._observation()

    def evaluate(self, split: str = "val", batch_size: int = 256) -> dict[str, float]:
        """Metrics of the current student on an evaluation split of the same data set and priors."""
        from l2l_env.evaluation import evaluate_segmenter

        return evaluate_segmenter(self.segmenter, self.config, split, batch_size=batch_size)

    # ----------------------------------------------------------------- internals
    def _validate_action(self, action) -> np.ndarray:
        a = np.asarray(action)
        n = self.grid_size * self.grid_size
        if a.dtype.kind not in "biuf":
            raise ValueError(f"action dtype {a.dtype} is not numeric; expected MultiBinary({n}) of 0/1")
        if a.shape != (n,):
            raise ValueError(f"action shape {a.shape} is wrong; expected ({n},) "
                             f"(flat MultiBinary over the {self.grid_size}x{self.grid_size} grid)")
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                raise ValueError("action contains NaN or infinite values; expected 0/1 per cell")
            if not np.isin(a, (0.0, 1.0)).all():
                raise ValueError("action values must be exactly 0 or 1 "
                                 f"(got values such as {a[~np.isin(a, (0.0, 1.0))][:3]})")
        elif a.dtype.kind in "iu" and ((a < 0) | (a > 1)).any():
            raise ValueError("action values must be 0 or 1 "
                             f"(got values such as {a[(a < 0) | (a > 1)][:3]})")
        return a.astype(bool)

    def _row_at(self, pos: int) -> int:
        """The unlabeled bank row visited at global step ``pos``: passes over the pool, each in a
        fresh seeded order with a seeded sentence per referred object, appended as needed."""
        while pos >= len(self._schedule):
            order = self._rng.permutation(self.unlabeled.num_refs)
            picks = [rows[int(self._rng.integers(len(rows)))] if len(rows) > 1 else rows[0]
                     for rows in (self.unlabeled.ref_rows[i] for i in order)]
            self._schedule = np.concatenate([self._schedule, np.asarray(picks, dtype=np.int64)])
        return int(self._schedule[pos])

    def _current_sample_id(self) -> str:
        return self.unlabeled.sample_ids[self._row_at(self._global_step)]

    def _text_embeddings(self, phrases: list[str]) -> np.ndarray:
        tokens, mask = self.segmenter.text_features(phrases)
        tokens, mask = tokens.detach().float().cpu(), mask.detach().cpu().float()
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
        pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return pooled.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def _predictions(self, pos: int) -> dict[str, np.ndarray]:
        """Student/teacher maps of the sample at ``pos``, computed in one batch for every sample
        until the next segmenter update (they go stale after it)."""
        if pos not in self._cache:
            self._cache.clear()
            k = self.config.update_interval
            end = (pos // k + 1) * k
            positions = list(range(pos, end))
            rows = np.array([self._row_at(p) for p in positions])
            bank = self.unlabeled
            images, priors = bank.images[rows], bank.priors[rows]
            phrases = [bank.phrases[r] for r in rows]
            student = self.segmenter.predict(images, priors, phrases, teacher=False)
            teacher = self.segmenter.predict(images, priors, phrases, teacher=True)
            text = self._text_embeddings(phrases)
            student_grid = pool_to_grid(student, self.grid_size)
            teacher_grid = pool_to_grid(teacher, self.grid_size)
            for i, p in enumerate(positions):
                self._cache[p] = {"student_full": student[i], "teacher_full": teacher[i],
                                  "student_grid": student_grid[i], "teacher_grid": teacher_grid[i],
                                  "text": text[i]}
        return self._cache[pos]

    def _labels(self, row: int, pred: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Label values at the grid and at full resolution, from the configured source."""
        source = self.config.label_source
        if source == "teacher":
            grid, full = pred["teacher_grid"], pred["teacher_full"]
        elif source == "prior":
            grid, full = self.unlabeled.prior_grid[row], self.unlabeled.priors[row]
        else:  # fused: the mean of prior and teacher
            grid = 0.5 * (pred["teacher_grid"] + self.unlabeled.prior_grid[row])
            full = 0.5 * (pred["teacher_full"] + self.unlabeled.priors[row])
        return (grid > 0.5).astype(np.float32), (full > 0.5).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        pos = self._global_step
        row = self._row_at(pos)
        pred = self._predictions(pos)
        teacher, student = pred["teacher_grid"], pred["student_grid"]
        p = np.clip(teacher, 1e-6, 1 - 1e-6)
        entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        uncertainty = np.maximum(entropy, np.abs(student - teacher))
        obs = {
            "prior": self.unlabeled.prior_grid[row][None],
            "student": student[None],
            "teacher": teacher[None],
            "uncertainty": uncertainty[None],
            "text": pred["text"],
            "no_prior": np.array([float(self.unlabeled.no_prior[row])]),
            "progress": np.array([min(1.0, pos / self.config.progress_horizon)]),
        }
        if self.config.include_image:
            img = self.unlabeled.images[row].astype(np.float32) / 255.0
            obs["image"] = pool_to_grid(np.moveaxis(img, -1, 0), self.grid_size)
        return {k: np.clip(v, 0.0 if k != "text" else -1.0, 1.0).astype(np.float32)
                for k, v in obs.items()}

    def _truth_cells(self, row: int):
        def truth() -> np.ndarray:
            return pool_to_grid(self._truth.mask(row)[None].astype(np.float32), self.grid_size)[0].ravel()
        return truth

    def _diagnostics(self, row: int, sel_grid: np.ndarray, labels_full: np.ndarray) -> dict[str, float]:
        """Pseudo-label quality against ground truth: reported, never learned from."""
        gt = self._truth.mask(row)
        sel = np.kron(sel_grid, np.ones((self._scale, self._scale), dtype=bool))
        lab = labels_full > 0.5
        n_sel = int(sel.sum())
        correct = int((sel & (lab == gt)).sum())
        fg_sel = sel & lab
        n_gt = int(gt.sum())
        return {
            "pl_precision": correct / n_sel if n_sel else 0.0,
            "pl_fg_precision": float((fg_sel & gt).sum() / fg_sel.sum()) if fg_sel.any() else 0.0,
            "pl_recall": float((fg_sel & gt).sum() / n_gt) if n_gt else 0.0,
            "pl_selected_pixels": n_sel,
            "pl_correct_pixels": correct,
        }

    def _probe_score(self) -> float:
        if len(self.probe) == 0:
            return 0.0
        from l2l_env.metrics import iou

        probs = self.segmenter.predict(self.probe.images, self.probe.priors, self.probe.phrases)
        return float(iou(probs > 0.5, self.probe.masks).mean())

    def _update(self) -> dict[str, float]:
        """Train the coupled segmenter on labeled data + the pending selections."""
        cfg = self.config
        if self._probe_miou is None:
            self._probe_miou = self._probe_score()
        rows = np.array([p[0] for p in self._pending], dtype=np.int64)
        sels = np.stack([p[1] for p in self._pending]).astype(np.float32)
        targets = np.stack([p[2] for p in self._pending])
        weights = np.kron(sels, np.ones((1, self._scale, self._scale), np.float32)) * cfg.pseudo_weight
        keep = weights.reshape(len(rows), -1).any(axis=1)
        rows, targets, weights = rows[keep], targets[keep], weights[keep]
        self._pending = []
        bank, lab = self.unlabeled, self.labeled
        losses = []
        for _ in range(cfg.update_steps):
            idx = self._rng.choice(len(lab), size=min(cfg.labeled_batch, len(lab)), replace=False)
            if len(rows) + len(idx) == 0:
                break
            images = np.concatenate([bank.images[rows], lab.images[idx]])
            priors = np.concatenate([bank.priors[rows], lab.priors[idx]])
            phrases = [bank.phrases[r] for r in rows] + [lab.phrases[i] for i in idx]
            tgt = np.concatenate([targets, lab.masks[idx].astype(np.float32)])
            wts = np.concatenate([weights, np.ones((len(idx),) + lab.masks.shape[1:], np.float32)])
            losses.append(self.segmenter.train_step(images, priors, phrases, tgt, wts)["loss"])
        self._cache.clear()
        before = self._probe_miou
        self._probe_miou = self._probe_score()
        return {"loss": float(np.mean(losses)) if losses else 0.0,
                "pseudo_samples": int(len(rows)),
                "probe_mIoU": self._probe_miou,
                "probe_delta": self._probe_miou - before,
                "segmenter_step": int(self.segmenter.step)}
