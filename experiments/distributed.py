"""Segmenter training beyond one process: ``torchrun --nproc_per_node=N -m experiments.run ...``.

When the torchrun variables (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``) are set, every rank
builds the same run, initialises ``torch.distributed`` (``gloo`` on the CPU, ``nccl`` on CUDA),
wraps the segmenter's network in :class:`~torch.nn.parallel.DistributedDataParallel` for its
training forward passes (inference stays local), and keeps only its shard of the unlabeled pool:
referred objects ``i`` with ``i % world_size == rank``. Each rank steps its own env copy and its own
agent on its shard; every segmenter update all-reduces the gradients, so the segmenter weights stay
identical on every rank. Rank 0 writes logs, results and the final checkpoint; each rank keeps its
own resume checkpoint (its env position and agent differ).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(device: str) -> tuple[DistContext, str]:
    """Join the process group when launched by torchrun; returns the context and this rank's
    device (``cuda`` becomes ``cuda:<LOCAL_RANK>``)."""
    if not launched_by_torchrun():
        return DistContext(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, backend), device


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def wrap_segmenter(segmenter: Any, ctx: DistContext) -> None:
    """Route the segmenter's *training* forward passes through DDP (gradients are averaged over
    ranks inside ``backward``); ``predict`` keeps using the bare network, so inference never
    needs the other ranks. The state dict keys stay those of the bare network."""
    if not ctx.enabled:
        return
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = segmenter.model
    ids = [segmenter.device.index] if segmenter.device.type == "cuda" else None
    segmenter.training_network = DDP(model, device_ids=ids, broadcast_buffers=True)
    if segmenter.config.use_text and not segmenter.config.freeze_text:
        # The trainable text encoder runs outside the wrapped network: average its gradients by
        # hand, tensor by tensor, as each one is accumulated (the same order on every rank).
        def average(param: torch.Tensor) -> None:
            dist.all_reduce(param.grad)
            param.grad.div_(ctx.world_size)

        for param in segmenter.text_encoder.parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(average)


def shard_data(data: Any, ctx: DistContext) -> tuple[Any, dict[str, Any]]:
    """This rank's :class:`~l2l_env.loop_data.LoopData` (its share of the unlabeled pool) and the
    shard's facts (``{}`` in a single process)."""
    if not ctx.enabled:
        return data, {}
    return data.shard(ctx.rank, ctx.world_size)


@torch.no_grad()
def sync_buffers(segmenter: Any, ctx: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm statistics) of the student and the teacher to every rank
    (the parameters are kept equal by DDP; the buffers drift by each rank's last batch)."""
    if not ctx.enabled:
        return
    for module in (segmenter.model, segmenter.teacher):
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def parameter_digest(module: torch.nn.Module) -> str:
    """A SHA-256 of the module's parameters (bit-exact equality check across ranks)."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """``obj`` of every rank, in rank order (just ``[obj]`` in a single process)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
