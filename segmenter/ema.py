"""The EMA teacher: an exponential moving average of the student's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` in eval mode."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for parameters; buffers (batch
    norm statistics) are averaged the same way when floating point, copied otherwise."""
    # one multi-tensor lerp (the same per-element formula as Tensor.lerp_, in one call)
    t_avg = list(teacher.parameters())
    s_avg = [p.detach() for p in student.parameters()]
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        if t_buf.dtype.is_floating_point:
            t_avg.append(t_buf)
            s_avg.append(s_buf)
        else:
            t_buf.copy_(s_buf)
    if t_avg:
        torch._foreach_lerp_(t_avg, s_avg, 1.0 - momentum)
