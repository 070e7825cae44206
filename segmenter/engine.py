"""The :class:`Segmenter`: network, text encoder with its phrase cache, optimiser, schedule, EMA
teacher, one-step training, batched inference, and exact checkpoint/resume."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segmenter.config import UNKNOWN_CLASS, SegmenterConfig
from segmenter.ema import ema_update, make_teacher
from segmenter.shared.files import atomic_file
from segmenter.loss import loss_terms
from segmenter.model import GuidedSegNet
from segmenter.prior_noise import warp_priors
from segmenter.text import TextEncoder

STATE_VERSION = 1
# Config keys that may differ between a checkpoint and the Segmenter it is loaded into.
_RUNTIME_KEYS = {"device", "amp", "text_cache_size"}


class Segmenter:
    """A guided referring segmenter that trains step by step and predicts in batches.

    ``Segmenter(config, **overrides)``: ``overrides`` are :class:`SegmenterConfig` fields. A
    ``text_encoder`` may be handed in to share one loaded encoder (and its cache) between
    segmenters. All randomness of training (prior dropout) comes from the segmenter's own seeded
    generator, so :meth:`state_dict` / :meth:`load_state_dict` resume a run exactly; the global
    torch RNG is neither used for training nor changed (model initialisation forks it). The EMA
    teacher averages the segmentation network; a fine-tuned text encoder (``freeze_text=False``)
    is shared by student and teacher.
    """

    def __init__(self, config: SegmenterConfig | None = None, *,
                 text_encoder: TextEncoder | None = None, **overrides: Any) -> None:
        cfg = config if config is not None else SegmenterConfig()
        if overrides:
            cfg = cfg.replace(**overrides)
        self.config = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"SegmenterConfig.device={cfg.device!r} but CUDA is not available; "
                               f"use device='cpu'")
        if text_encoder is not None:
            if text_encoder.name != cfg.text_encoder or text_encoder.frozen != cfg.freeze_text:
                raise ValueError(
                    f"text_encoder ({text_encoder.name!r}, frozen={text_encoder.frozen}) does not "
                    f"match config.text_encoder={cfg.text_encoder!r}, "
                    f"freeze_text={cfg.freeze_text}")
            text_encoder.to(self.device)
        self._text_encoder = text_encoder
        text_dim = self.text_encoder.dim if cfg.use_text else 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = GuidedSegNet(cfg, text_dim).to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.teacher = make_teacher(self.model)
        self.training_network: nn.Module | None = None
        """The network that :meth:`train_step`'s forward pass runs through; ``None``: the student
        itself. A wrapper of the student goes here (e.g. ``DistributedDataParallel``)."""
        self._amp = bool(cfg.amp) and self.device.type == "cuda"
        self._amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self._amp and self._amp_dtype == torch.float16)
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self._generator = torch.Generator().manual_seed(cfg.seed + 1)
        self._step = 0

    # ------------------------------------------------------------------ parts
    @property
    def text_encoder(self) -> TextEncoder:
        """The text encoder (loaded on first use)."""
        if self._text_encoder is None:
            cfg = self.config
            self._text_encoder = TextEncoder(cfg.text_encoder, frozen=cfg.freeze_text,
                                             max_tokens=cfg.max_tokens,
                                             cache_size=cfg.text_cache_size).to(self.device)
        return self._text_encoder

    @property
    def step(self) -> int:
        """The number of optimiser steps taken."""
        return self._step

    def num_parameters(self) -> int:
        """Trainable parameters of the segmentation network (text encoder excluded)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _trainable_text(self) -> bool:
        return self.config.use_text and not self.config.freeze_text

    def _param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for p in self.model.parameters():
            (decay if p.ndim > 1 else no_decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        if self._trainable_text():
            groups.append({"params": list(self.text_encoder.parameters()),
                           "lr": self.config.lr * self.config.text_lr_scale})
        return groups

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.lr_warmup_steps:
            return (step + 1) / cfg.lr_warmup_steps
        frac = min(step, cfg.total_steps) / cfg.total_steps
        return max((1.0 - frac) ** cfg.poly_power, cfg.min_lr_ratio)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._amp:
            return torch.autocast(device_type="cuda", dtype=self._amp_dtype)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ inputs
    def _inputs(self, images: np.ndarray, priors: np.ndarray | None, count_phrases: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.image_size
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"images must be (B, {size}, {size}, 3) uint8 at config.image_size, "
                             f"got {images.shape}; resize with segmenter.data.resize_batch")
        b = images.shape[0]
        if count_phrases != b:
            raise ValueError(f"got {b} images but {count_phrases} phrases")
        img = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        img = img.permute(0, 3, 1, 2).float() / 255.0 if img.dtype == torch.uint8 else \
            img.permute(0, 3, 1, 2).float()
        if priors is None:
            pri = torch.full((b, 1, size, size), self.config.no_prior_value, device=self.device)
        else:
            priors = np.asarray(priors, dtype=np.float32)
            if priors.shape != (b, size, size):
                raise ValueError(f"priors must be (B, H, W) = {(b, size, size)}, "
                                 f"got {priors.shape}")
            if not np.isfinite(priors).all():
                raise ValueError("priors contain NaN or inf; expected probabilities in [0, 1]")
            pri = torch.from_numpy(np.clip(priors, 0.0, 1.0)).to(self.device).unsqueeze(1)
        return img, pri

    def text_features(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, T, D) float, mask (B, T) bool)`` on the device, cached per phrase."""
        return self.text_encoder(list(phrases), self.device)

    def token_ids(self, phrases: Sequence[str]) -> torch.Tensor | None:
        """The phrases' token ids on the device when the network embeds word identities
        (``word_buckets`` > 0), else ``None``."""
        if not (self.config.use_text and self.config.word_buckets):
            return None
        return self.text_encoder.token_ids(list(phrases), self.device)

    def _logits(self, model: nn.Module, img: torch.Tensor, pri: torch.Tensor,
                phrases: Sequence[str], object_out: list[torch.Tensor] | None = None
                ) -> torch.Tensor:
        tokens, mask = self.text_features(phrases) if self.config.use_text else (None, None)
        extra: dict[str, Any] = {"ids": self.token_ids(phrases)}
        if object_out is not None:
            extra["object_out"] = object_out
        with self._autocast():
            return model(img, pri, tokens, mask, **extra).float().squeeze(1)

    # ------------------------------------------------------------------ training
    def train_step(self, images: np.ndarray, priors: np.ndarray | None, phrases: Sequence[str],
                   targets: np.ndarray, weights: np.ndarray | None = None,
                   objects: np.ndarray | None = None) -> dict[str, float]:
        """One optimiser step on a batch; updates the EMA teacher.

        ``targets`` (B, H, W) in [0, 1]; ``weights`` (B, H, W) >= 0, 0 = ignored pixel (``None``:
        all ones). ``objects`` (B, len(config.object_classes), H, W) int: per pixel the class of
        the object there for each object head (0 background, ``UNKNOWN_CLASS`` unknown/ignored), trained with
        weight ``config.object_weight`` (``None``: those heads are not trained this step).
        Returns ``{"loss", "bce", "dice", "lr", "grad_norm"}`` (and ``"objects"``). Raises
        ``FloatingPointError`` naming the step on a non-finite loss or gradient; the model, the
        optimiser and the teacher are then left as they were before the step.
        """
        cfg = self.config
        if objects is not None and not cfg.object_classes:
            raise ValueError("train_step got object targets but the segmenter has no "
                             "object-attribute heads (SegmenterConfig.object_classes is empty)")
        img, pri = self._inputs(images, priors, len(phrases))
        b, size = img.shape[0], cfg.image_size
        targets = np.asarray(targets, dtype=np.float32)
        weights = np.ones_like(targets) if weights is None else \
            np.asarray(weights, dtype=np.float32)
        for name, arr in (("targets", targets), ("weights", weights)):
            if arr.shape != (b, size, size):
                raise ValueError(f"{name} must be (B, H, W) = {(b, size, size)}, got {arr.shape}")
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError("weights must be finite and >= 0 (0 = ignored pixel)")
        tgt = torch.from_numpy(np.clip(targets, 0.0, 1.0)).to(self.device)
        wgt = torch.from_numpy(weights).to(self.device)
        rng_state = self._generator.get_state()
        if cfg.use_prior and cfg.prior_warp > 0:
            pri = warp_priors(pri, cfg.prior_warp, self._generator, fill=0.0)
        if cfg.use_prior and cfg.prior_dropout > 0:
            keep = torch.rand(b, generator=self._generator) >= cfg.prior_dropout
            keep = keep.to(self.device).view(b, 1, 1, 1)
            pri = torch.where(keep, pri, torch.full_like(pri, cfg.no_prior_value))
        self.model.train()
        buffers = [buf.detach().clone() for buf in self.model.buffers()]  # batch-norm statistics
        net = self.model if self.training_network is None else self.training_network
        object_logits: list[torch.Tensor] | None = [] if objects is not None else None
        logits = self._logits(net, img, pri, phrases, object_logits)
        terms = loss_terms(logits, tgt, wgt, cfg.bce_weight, cfg.dice_weight)
        loss = terms["loss"]
        if object_logits:
            obj = torch.from_numpy(np.asarray(objects, dtype=np.int64)).to(self.device)
            if obj.shape != (b, len(object_logits), size, size):
                raise ValueError(f"objects must be (B, {len(object_logits)}, {size}, {size}), "
                                 f"got {tuple(obj.shape)}")
            known = (obj >= 0).sum().clamp_min(1)  # a batch of only unknown pixels adds 0
            ce = sum(F.cross_entropy(F.interpolate(o.float(), size=(size, size), mode="bilinear",
                                                   align_corners=False), obj[:, i],
                                     ignore_index=UNKNOWN_CLASS, reduction="sum")
                     for i, o in enumerate(object_logits)) * (len(object_logits) / known)
            terms["objects"] = ce
            loss = loss + cfg.object_weight * ce
        if not torch.isfinite(loss):
            self._undo(buffers, rng_state)
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self._step} (bce={terms['bce'].item()}, "
                f"dice={terms['dice'].item()}); the model was not updated")
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]))
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            self._undo(buffers, rng_state)
            raise FloatingPointError(f"non-finite gradient norm at step {self._step} "
                                     f"(loss={loss.item()}); the model was not updated")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        ema_update(self.teacher, self.model, cfg.ema_momentum)
        self._step += 1
        out = {"loss": loss.item(), "bce": terms["bce"].item(), "dice": terms["dice"].item(),
               "lr": float(lr), "grad_norm": float(grad_norm)}
        if "objects" in terms:
            out["objects"] = float(terms["objects"].item())
        return out

    @torch.no_grad()
    def _undo(self, buffers: list[torch.Tensor], rng_state: torch.Tensor) -> None:
        """Put back the batch-norm statistics and the RNG a failed step changed."""
        for buf, old in zip(self.model.buffers(), buffers):
            buf.copy_(old)
        self._generator.set_state(rng_state)

    # ------------------------------------------------------------------ inference
    def predict(self, images: np.ndarray, priors: np.ndarray | None, phrases: Sequence[str], *,
                teacher: bool = False, batch_size: int = 256) -> np.ndarray:
        """(B, H, W) float32 foreground probabilities (eval mode, no gradient), in batches.

        ``images`` (B, H, W, 3) uint8 at ``config.image_size``; ``priors`` (B, H, W) in [0, 1]
        (``None``: no prior, the flat map ``config.no_prior_value``); ``teacher`` uses the EMA
        teacher instead of the student.
        """
        phrases = list(phrases)
        images = np.asarray(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model = self.teacher if teacher else self.model
        model.eval()
        if self._text_encoder is not None:
            self._text_encoder.eval()
        out = np.empty((len(phrases), self.config.image_size, self.config.image_size), np.float32)
        if len(images) != len(phrases):
            raise ValueError(f"got {len(images)} images but {len(phrases)} phrases")
        with torch.inference_mode():
            for start in range(0, len(phrases), batch_size):
                sl = slice(start, start + batch_size)
                batch_priors = None if priors is None else np.asarray(priors)[sl]
                img, pri = self._inputs(images[sl], batch_priors, len(phrases[sl]))
                probs = torch.sigmoid(self._logits(model, img, pri, phrases[sl]))
                out[sl] = probs.cpu().numpy()
        return out

    def prior_trust(self, images: np.ndarray, priors: np.ndarray | None, phrases: Sequence[str], *,
                    teacher: bool = False) -> np.ndarray:
        """(B, 4) float32: per sample, the learned trust in its prior (0..1) at each guided stage,
        how much the network lets the prior through after comparing what the prior points at with
        the phrase. Needs ``use_guidance`` and ``use_prior``."""
        cfg = self.config
        if not (cfg.use_guidance and cfg.use_prior):
            raise ValueError("prior_trust needs use_guidance=True and use_prior=True")
        model = self.teacher if teacher else self.model
        model.eval()
        phrases = list(phrases)
        img, pri = self._inputs(np.asarray(images), priors, len(phrases))
        tokens, mask = self.text_features(phrases) if cfg.use_text else (None, None)
        trust: list[torch.Tensor] = []
        with torch.inference_mode(), self._autocast():
            model(img, pri, tokens, mask, trust_out=trust, ids=self.token_ids(phrases))
        return torch.stack(trust, 1).float().cpu().numpy()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: config, weights, EMA teacher, optimiser,
        scheduler, AMP scaler, step and the training RNG state."""
        state = {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self._step,
            "generator": self._generator.get_state(),
        }
        if self._trainable_text():
            state["text_encoder"] = self.text_encoder.model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the architecture settings must match."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"segmenter state version {state.get('version')!r}; "
                             f"expected {STATE_VERSION}")
        mine, theirs = self.config.to_dict(), dict(state["config"])
        theirs = SegmenterConfig.from_saved(theirs).to_dict()
        differ = sorted(k for k in mine if k not in _RUNTIME_KEYS and mine[k] != theirs.get(k))
        if differ:
            pairs = {k: (theirs.get(k), mine[k]) for k in differ}
            raise ValueError(f"checkpoint config differs in {differ}: {pairs} (checkpoint, this)")
        self.model.load_state_dict(state["model"])
        self.teacher.load_state_dict(state["teacher"])
        if "text_encoder" in state:
            self.text_encoder.model.load_state_dict(state["text_encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._step = int(state["step"])
        self._generator.set_state(state["generator"])

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (:func:`segmenter.shared.files.atomic_file`)."""
        with atomic_file(path) as fh:
            torch.save(self.state_dict(), fh)

    @classmethod
    def load(cls, path: str | os.PathLike, *, text_encoder: TextEncoder | None = None,
             **overrides: Any) -> Segmenter:
        """A segmenter restored from :meth:`save`; ``overrides`` may change runtime keys
        (``device``, ``amp``, ``text_cache_size``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"segmenter checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        bad = sorted(set(overrides) - _RUNTIME_KEYS)
        if bad:
            raise ValueError(f"Segmenter.load can only override {sorted(_RUNTIME_KEYS)}, got {bad}")
        config = SegmenterConfig.from_saved(state["config"]).replace(**overrides)
        seg = cls(config, text_encoder=text_encoder)
        seg.load_state_dict(state)
        return seg
