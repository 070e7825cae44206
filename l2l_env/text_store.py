"""Text features of a large run, encoded once into a packed file and read per batch.

A frozen text encoder keeps the features of at most ``text_cache_size`` phrases in memory. When a
run has more phrases than that (RefCOCO at full size), encoding them up front would not fit and
encoding them on first use costs an encoder pass per new phrase in the loop. Instead every phrase
is encoded once, in a fixed order and in fixed batches, into a file keyed by the encoder and the
phrases (written atomically, reused by later runs), and a :class:`StoredTextEncoder` reads the
features of each batch's phrases from it before it encodes: memory stays bounded by the cache,
the loop never runs the encoder, and a resumed run sees exactly the features of the
uninterrupted one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2l_env.data.cache import cache_dir, config_key
from l2l_env.packed import HEAD, read_header
from segmenter.shared.disk_cache import CacheFile, content_key, file_stats
from segmenter.shared.files import atomic_file
from segmenter.text import TextEncoder

MAGIC = b"L2LTXT01"
ENCODE_BATCH = 1024


class TextFeatureStore:
    """Token features (tokens, dim) float32 of ``phrases`` (the file's order), read by phrase.

    File: a header (magic, count, dim), ``count + 1`` int64 token offsets, then the token rows.
    """

    def __init__(self, path: str | os.PathLike, phrases: Sequence[str]) -> None:
        self.path = Path(path)
        count, dim, table, length = read_header(self.path, MAGIC, lambda n: 8 * (n + 1),
                                                "text feature store")
        offsets = np.frombuffer(table, dtype="<i8")
        self.dim = int(dim)
        self.start = HEAD.size + 8 * (int(count) + 1)
        tokens = int(offsets[-1]) if len(offsets) else 0
        expected = self.start + tokens * 4 * self.dim
        if count != len(phrases) or len(offsets) != count + 1 or length != expected:
            raise ValueError(f"text feature store {self.path} holds {length} bytes for {count} "
                             f"phrases; expected {len(phrases)} phrases and {expected} bytes "
                             "(cut short?): delete it to rebuild it")
        self.offsets = offsets.astype(np.int64)
        self.index = {p: i for i, p in enumerate(phrases)}

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, phrase: object) -> bool:
        return phrase in self.index

    def read(self, phrases: Sequence[str]) -> dict[str, torch.Tensor]:
        """The features of those of ``phrases`` that the store holds (others are left out)."""
        out: dict[str, torch.Tensor] = {}
        want = [p for p in dict.fromkeys(phrases) if p in self.index]
        if not want:
            return out
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for p in want:
                i = self.index[p]
                lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
                size = (hi - lo) * 4 * self.dim
                buf = os.pread(fd, size, self.start + lo * 4 * self.dim)
                if len(buf) != size:
                    raise ValueError(f"text feature store {self.path}: short read for {p!r}")
                rows = np.frombuffer(buf, dtype="<f4").reshape(hi - lo, self.dim)
                out[p] = torch.from_numpy(rows.copy())
        finally:
            os.close(fd)
        return out


def write_text_store(path: str | os.PathLike, encoder: TextEncoder, phrases: Sequence[str],
                     device: torch.device | str = "cpu") -> TextFeatureStore:
    """Encode ``phrases`` in order, in batches of :data:`ENCODE_BATCH`, into ``path`` (written
    atomically: an interrupted build leaves no file) and open it."""

    phrases = list(phrases)
    offsets = np.zeros(len(phrases) + 1, dtype="<i8")
    with atomic_file(path) as fh:
        fh.write(HEAD.pack(MAGIC, len(phrases), int(encoder.dim)))
        fh.write(offsets.tobytes())  # placeholder, rewritten below
        total = 0
        batch = max(1, min(ENCODE_BATCH, encoder.cache_size))  # all of a batch stays cached
        for start in range(0, len(phrases), batch):
            chunk = phrases[start:start + batch]
            encoder(chunk, device)
            features = encoder.cached_features()
            for k, phrase in enumerate(chunk):
                rows = features[phrase].float().cpu().numpy().astype("<f4")
                fh.write(np.ascontiguousarray(rows).tobytes())
                total += rows.shape[0]
                offsets[start + k + 1] = total
        fh.seek(HEAD.size)
        fh.write(offsets.tobytes())
    return TextFeatureStore(path, phrases)


def text_store_path(cache_root: str | os.PathLike | None, encoder: str, max_tokens: int,
                    phrases: Sequence[str]) -> Path:
    """Where the store of these phrases for this encoder is kept."""

    key = config_key({"encoder": encoder, "max_tokens": int(max_tokens),
                      "phrases": config_key(list(phrases), 32), "version": 1})
    return cache_dir(cache_root) / "text" / f"store-{key}.f32"


def encoder_inputs(encoder: str, max_tokens: int, phrases: Sequence[str]) -> str:
    """The fingerprint of what text features are computed from: the encoder (with the sizes and
    modification times of its files when it is a local folder), ``max_tokens`` and the phrases."""
    files = file_stats([encoder]) if Path(encoder).is_dir() else []
    return content_key({"encoder": encoder, "files": files, "max_tokens": int(max_tokens),
                        "phrases": content_key(list(phrases))})


def text_feature_store(encoder: TextEncoder, phrases: Sequence[str],
                       cache_root: str | os.PathLike | None = None,
                       device: torch.device | str = "cpu") -> TextFeatureStore:
    """The store of ``phrases`` for ``encoder`` (a frozen one): opened when it exists and is
    what its inputs and checksum say, else built (a stale, corrupt or cut file is named and
    rebuilt)."""
    if not encoder.frozen:
        raise ValueError("a text feature store needs a frozen text encoder (freeze_text=true)")
    path = text_store_path(cache_root, encoder.name, encoder.max_tokens, phrases)
    cache = CacheFile(path, encoder_inputs(encoder.name, encoder.max_tokens, phrases),
                      "text feature store")
    store = cache.read(lambda file: TextFeatureStore(file, phrases))
    if store is not None:
        return store
    store = write_text_store(path, encoder, phrases, device)
    cache.seal()
    return store


def phrase_features(segmenter: Any, phrases: Sequence[str],
                    cache_root: str | os.PathLike | None, batch: int, write: bool = True
                    ) -> Path | None:
    """Put the features of every phrase into ``segmenter``'s (frozen) text encoder's cache:
    read from the cache file of the encoder and phrases when it is valid (its path is returned),
    else encoded in batches of ``batch`` in a fixed order and, with ``write``, saved for later
    runs (a stale, corrupt or foreign file is named and rebuilt)."""

    cfg = segmenter.config
    key = config_key({"encoder": cfg.text_encoder, "max_tokens": cfg.max_tokens,
                      "phrases": config_key(list(phrases), 32)})
    cache = CacheFile(cache_dir(cache_root) / "text" / f"features-{key}.pt",
                      encoder_inputs(cfg.text_encoder, cfg.max_tokens, phrases),
                      "text feature cache")

    def load(file: Path) -> Path:
        segmenter.text_encoder.add_cached(torch.load(file, map_location="cpu", weights_only=True))
        return file

    if cache.read(load, errors=(Exception,)) is not None:  # Exception: a foreign file
        return cache.path
    for start in range(0, len(phrases), batch):
        segmenter.text_features(list(phrases[start:start + batch]))
    if write:
        features = segmenter.text_encoder.cached_features()
        buf = io.BytesIO()
        torch.save({p: features[p] for p in phrases if p in features}, buf)
        cache.write(buf.getvalue())
    return None


class StoredTextEncoder(TextEncoder):
    """A :class:`~segmenter.text.TextEncoder` that, once a store is attached, takes the features
    of every phrase the store holds from it (into its cache) before encoding the rest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store: TextFeatureStore | None = None

    def attach(self, store: TextFeatureStore | None) -> None:
        """Read features from ``store`` from now on (``None``: encode everything again)."""
        self.store = store

    def forward(self, phrases: Sequence[str], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.store is not None and self.frozen and not isinstance(phrases, str):
            self.add_cached(self.store.read(phrases))
        return super().forward(phrases, device)
