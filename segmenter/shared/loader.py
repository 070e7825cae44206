"""Whole training batches made by a function of their key, in this process or in worker
processes (:class:`BatchLoader`); the batches are the same whatever the number of workers."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch


def _identity(item: Any) -> Any:
    return item


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the process that started it dies: a
    worker left behind by a killed run could otherwise block for ever on a full result pipe."""
    if not sys.platform.startswith("linux"):
        return
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
