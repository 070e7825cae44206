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
    for t_par, s_par in zip(teacher.parameters(), student.parameters()):
        t_par.lerp_(s_par.detach(), 1.0 - momentum)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        if t_buf.dtype.is_floating_point:
            t_buf.lerp_(s_buf, 1.0 - momentum)
        else:
            t_buf.copy_(s_buf)
