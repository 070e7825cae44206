"""The EMA teacher: the exact update ``teacher = m * teacher + (1 - m) * student`` on parameters
and batch-norm statistics, integer buffers copied, momentum 1 a no-op, and the engine applying it
with ``SegmenterConfig.ema_momentum`` after every optimiser step."""

import numpy as np
import pytest
import torch
from torch import nn

from segmenter import Segmenter, SegmenterConfig
from segmenter.ema import ema_update, make_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def _diverged_pair() -> tuple[nn.Module, nn.Module]:
    """A teacher, and a student whose weights *and* batch-norm statistics have moved away from it
    (the running statistics by forward passes in train mode, the weights by a perturbation)."""
    student = _net()
    teacher = make_teacher(student)
    g = torch.Generator().manual_seed(1)
    student.train()
    with torch.no_grad():
        for _ in range(3):
            student(torch.randn(5, 3, 6, 6, generator=g) * 3 + 1)
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return teacher, student


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_make_teacher_is_a_frozen_independent_copy_in_eval_mode():
    student = _net()
    teacher = make_teacher(student)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    before = _snapshot(teacher)
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    for k, v in teacher.state_dict().items():  # no storage shared with the student
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0])
def test_update_is_the_exact_moving_average_of_parameters_and_bn_statistics(momentum):
    teacher, student = _diverged_pair()
    t0, s0 = _snapshot(teacher), _snapshot(student)
    bn_keys = [k for k in t0 if k.endswith(("running_mean", "running_var"))]
    assert bn_keys and all(not torch.equal(t0[k], s0[k]) for k in bn_keys)  # the test can fail
    assert s0["1.num_batches_tracked"] == 3 and t0["1.num_batches_tracked"] == 0

    ema_update(teacher, student, momentum)

    for k, got in teacher.state_dict().items():
        if got.dtype.is_floating_point:
            want = momentum * t0[k] + (1 - momentum) * s0[k]
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=k)
        else:  # num_batches_tracked: copied, not averaged
            assert torch.equal(got, s0[k]), k
    for k, v in student.state_dict().items():  # the student is only read
        assert torch.equal(v, s0[k]), k
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_update_matches_per_tensor_lerp_bit_for_bit():
    """The one multi-tensor call gives exactly what ``Tensor.lerp_`` gives tensor by tensor (so
    runs keep their results to the bit), on parameters and batch-norm statistics."""
    teacher, student = _diverged_pair()
    want = {k: v.clone() for k, v in teacher.state_dict().items()}
    s0 = student.state_dict()
    for k, v in want.items():
        if v.dtype.is_floating_point:
            v.lerp_(s0[k], 1.0 - 0.999)
        else:
            v.copy_(s0[k])
    ema_update(teacher, student, 0.999)
    for k, got in teacher.state_dict().items():
        assert torch.equal(got, want[k]), k


def test_momentum_one_leaves_the_teacher_unchanged():
    teacher, student = _diverged_pair()
    t0 = _snapshot(teacher)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    out0 = teacher(x)
    for _ in range(3):
        ema_update(teacher, student, 1.0)
    for k, v in teacher.state_dict().items():
        if v.dtype.is_floating_point:  # weights and batch-norm statistics: bit for bit
            assert torch.equal(v, t0[k]), k
        else:  # num_batches_tracked follows the student (documented; unused in eval mode)
            assert torch.equal(v, student.state_dict()[k]), k
    assert torch.equal(teacher(x), out0)


def test_two_updates_compound():
    teacher, student = _diverged_pair()
    t0, s0 = _snapshot(teacher), _snapshot(student)
    ema_update(teacher, student, 0.8)
    ema_update(teacher, student, 0.8)
    w = teacher.state_dict()["0.weight"]
    want = 0.64 * t0["0.weight"] + 0.36 * s0["0.weight"]
    torch.testing.assert_close(w, want, rtol=1e-6, atol=1e-6)


def _batch(n: int = 4, size: int = 32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    priors = rng.random((n, size, size)).astype(np.float32)
    targets = (rng.random((n, size, size)) > 0.6).astype(np.float32)
    return images, priors, [f"object number {i}" for i in range(n)], targets, None


@pytest.mark.parametrize("momentum", [1.0, 0.75])
def test_train_step_updates_the_teacher_with_the_configured_momentum(text_encoder, tiny_segmenter,
                                                                     momentum):
    seg = Segmenter(SegmenterConfig(image_size=32, lr_warmup_steps=1, prior_dropout=0.0,
                                    ema_momentum=momentum, **tiny_segmenter),
                    text_encoder=text_encoder)
    t0 = _snapshot(seg.teacher)
    seg.train_step(*_batch())
    student = _snapshot(seg.model)
    moved = [k for k in student if student[k].dtype.is_floating_point
             and not torch.equal(student[k], t0[k])]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)
    for k, got in seg.teacher.state_dict().items():
        if not got.dtype.is_floating_point:  # num_batches_tracked: copied from the student
            assert torch.equal(got, student[k]), k
        elif momentum == 1.0:
            assert torch.equal(got, t0[k]), k
        else:
            torch.testing.assert_close(got, momentum * t0[k] + (1 - momentum) * student[k],
                                       rtol=1e-5, atol=1e-6, msg=k)
