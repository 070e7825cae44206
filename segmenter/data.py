"""Bring (image, mask, prior) arrays to the segmenter's square input size, and back.

Images and priors are resized bilinearly, masks by nearest neighbour, all with ``torch``
interpolation on whole batches. Inputs that are already at the size are returned unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, h, w, 3) uint8, bilinear (anti-aliased when shrinking)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got shape {images.shape}")
    hw = _size(size)
    if images.shape[1:3] == hw:
        return images
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    shrink = images.shape[1] > hw[0] or images.shape[2] > hw[1]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_maps(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W) float maps (priors, probabilities) -> (B, h, w) float32, bilinear."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {maps.shape}")
    hw = _size(size)
    if maps.shape[1:3] == hw:
        return maps.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).unsqueeze(1)
    shrink = maps.shape[1] > hw[0] or maps.shape[2] > hw[1]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return t.squeeze(1).numpy()


def resize_masks(masks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W) bool/0-1 masks -> (B, h, w) of the same dtype, nearest neighbour."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got shape {masks.shape}")
    hw = _size(size)
    if masks.shape[1:3] == hw:
        return masks
    t = torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32)).unsqueeze(1)
    t = F.interpolate(t, size=hw, mode="nearest-exact")
    return t.squeeze(1).numpy().astype(masks.dtype)


def resize_batch(images: np.ndarray, size: int | tuple[int, int], masks: np.ndarray | None = None,
                 priors: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(images, masks, priors)`` at ``size`` (``None`` entries stay ``None``)."""
    return (resize_images(images, size),
            None if masks is None else resize_masks(masks, size),
            None if priors is None else resize_maps(priors, size))


def stack_samples(samples: Sequence, size: int | tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images (B,h,w,3) uint8, masks (B,h,w) bool, phrases)`` of ReferringSamples at ``size``.

    Samples of different original sizes are resized one by one; equal sizes in one batch call.
    """
    hw = _size(size)
    images, masks = [], []
    for s in samples:
        img = np.asarray(s.image)
        msk = np.asarray(s.mask)
        if img.shape[:2] != hw:
            img = resize_images(img[None], hw)[0]
            msk = resize_masks(msk[None], hw)[0]
        images.append(img)
        masks.append(msk.astype(bool))
    return np.stack(images), np.stack(masks), [s.phrase for s in samples]


# --------------------------------------------------------------------------- batch loading

def _identity(item: Any) -> Any:
    return item


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the process that started it dies: a
    worker left behind by a killed run could otherwise block for ever on a full result pipe."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def _seed_worker(worker_id: int) -> None:
    """Worker start-up: dies with its parent, one torch thread (workers run side by side) and
    fixed global seeds (batches draw their randomness from their own per-batch seeds; nothing
    should use these)."""
    _die_with_parent()
    info = torch.utils.data.get_worker_info()
    torch.set_num_threads(1)
    seed = (0 if info is None else int(info.seed)) % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_tensors(item: Any) -> Any:
    """numpy arrays of a batch as torch tensors (so that the loader can pin them)."""
    if isinstance(item, np.ndarray):
        return torch.from_numpy(item)
    if isinstance(item, dict):
        return {k: _to_tensors(v) for k, v in item.items()}
    if isinstance(item, tuple):
        return tuple(_to_tensors(v) for v in item)
    return item


def _to_arrays(item: Any) -> Any:
    if isinstance(item, torch.Tensor):
        return item.numpy()
    if isinstance(item, dict):
        return {k: _to_arrays(v) for k, v in item.items()}
    if isinstance(item, tuple):
        return tuple(_to_arrays(v) for v in item)
    return item


class _KeyedBatches(torch.utils.data.Dataset):
    """Item ``key`` is ``make(key)``: one whole batch, made from the key alone."""

    def __init__(self, make: Callable[[Any], Any], tensors: bool) -> None:
        self.make, self.tensors = make, tensors

    def __getitem__(self, key: Any) -> Any:
        item = self.make(key)
        return _to_tensors(item) if self.tensors else item


class _Keys(torch.utils.data.Sampler):
    """The keys of the current pass (set before each pass)."""

    def __init__(self) -> None:
        self.keys: Iterable[Any] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys)


class BatchLoader:
    """Whole batches made by ``make(key)`` for a sequence of keys, in order.

    With ``num_workers=0`` each batch is made in this process when it is asked for: exactly a
    plain loop. With workers, a ``torch.utils.data.DataLoader`` makes them in worker processes
    (kept between passes; up to ``prefetch`` batches per worker ahead of the consumer), so batch
    assembly (image reads, prior rendering, mask decoding) overlaps the training step. ``make``
    must depend on nothing but its key and data fixed when the workers start: then every batch
    is the same whatever the number of workers (randomness comes from per-batch seeds inside
    the key). ``pin_memory`` (CUDA only) pins the batches' arrays; they are handed back as numpy
    arrays viewing the pinned memory.
    """

    def __init__(self, make: Callable[[Any], Any], *, num_workers: int = 0,
                 pin_memory: bool = False, prefetch: int = 2) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.make = make
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self._keys = _Keys()
        self._loader: torch.utils.data.DataLoader | None = None
        if self.num_workers > 0:
            self._loader = torch.utils.data.DataLoader(
                _KeyedBatches(make, tensors=self.pin_memory), batch_size=None,
                sampler=self._keys, num_workers=self.num_workers, collate_fn=_identity,
                pin_memory=self.pin_memory, worker_init_fn=_seed_worker,
                persistent_workers=True, prefetch_factor=max(1, int(prefetch)))

    def batches(self, keys: Iterable[Any]) -> Iterator[Any]:
        """The batches of ``keys``, in order (stop iterating at any time). With workers they
        start on the first batches at once; a new pass ends the previous one."""
        if self._loader is None:
            return (self.make(key) for key in keys)
        self._keys.keys = keys
        items = iter(self._loader)  # the workers start on the first keys now
        return (_to_arrays(item) if self.pin_memory else item for item in items)

    def close(self) -> None:
        """Let the worker processes go (the loader that holds them is dropped)."""
        self._loader = None
