"""Checkpoints resume exactly; a non-finite loss stops training with a clear error."""

import numpy as np
import pytest
import torch

from segmenter import Segmenter, SegmenterConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tiny_segmenter):
    """The shared tiny architecture with this module's training settings."""
    return {**tiny_segmenter, "image_size": 32, "lr_warmup_steps": 2, "total_steps": 20,
            "prior_dropout": 0.5, "ema_momentum": 0.9}


def _batch(step: int, n: int = 4, size: int = 32):
    rng = np.random.default_rng(step)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    priors = rng.random((n, size, size)).astype(np.float32)
    targets = (rng.random((n, size, size)) > 0.6).astype(np.float32)
    weights = rng.random((n, size, size)).astype(np.float32) * (rng.random((n, size, size)) > 0.2)
    phrases = [f"object number {step + i}" for i in range(n)]
    return images, priors, phrases, targets, weights


def _assert_same_modules(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_resume_gives_the_same_next_step_bit_for_bit(text_encoder, tiny, tmp_path):
    run = Segmenter(SegmenterConfig(**tiny), text_encoder=text_encoder)
    for step in range(3):
        run.train_step(*_batch(step))
    path = tmp_path / "ckpt" / "seg.pt"
    run.save(path)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    expected = [run.train_step(*_batch(step)) for step in (3, 4)]

    resumed = Segmenter.load(path, text_encoder=text_encoder)
    assert resumed.step == 3
    got = [resumed.train_step(*_batch(step)) for step in (3, 4)]
    assert got == expected  # loss, bce, dice, lr, grad norm: identical floats
    assert resumed.step == run.step == 5
    _assert_same_modules(resumed.model, run.model)
    _assert_same_modules(resumed.teacher, run.teacher)
    assert resumed.scheduler.state_dict() == run.scheduler.state_dict()
    images, priors, phrases, _, _ = _batch(9)
    np.testing.assert_array_equal(resumed.predict(images, priors, phrases, teacher=True),
                                  run.predict(images, priors, phrases, teacher=True))


def test_state_dict_round_trip_in_memory_and_config_mismatch(text_encoder, tiny):
    a = Segmenter(SegmenterConfig(**tiny), text_encoder=text_encoder)
    a.train_step(*_batch(0))
    b = Segmenter(SegmenterConfig(**{**tiny, "seed": 0}), text_encoder=text_encoder)
    b.load_state_dict(a.state_dict())
    assert b.step == 1
    assert a.train_step(*_batch(1)) == b.train_step(*_batch(1))
    other = Segmenter(SegmenterConfig(**{**tiny, "decoder_width": 8}), text_encoder=text_encoder)
    with pytest.raises(ValueError, match="decoder_width"):
        other.load_state_dict(a.state_dict())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Segmenter.load("/nonexistent/seg.pt")


def test_training_rng_is_the_segmenters_own(text_encoder, tiny):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    seg = Segmenter(SegmenterConfig(**tiny), text_encoder=text_encoder)
    seg.train_step(*_batch(0))
    assert torch.equal(torch.get_rng_state(), before)


def test_non_finite_loss_stops_with_the_step_and_leaves_the_model(text_encoder, tiny):
    seg = Segmenter(SegmenterConfig(**tiny), text_encoder=text_encoder)
    seg.train_step(*_batch(0))
    seg.train_step(*_batch(1))
    with torch.no_grad():
        seg.model.decoder.head.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in seg.model.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in seg.teacher.state_dict().items()}
    rng_before = seg.state_dict()["generator"].clone()
    with pytest.raises(FloatingPointError, match="step 2"):
        seg.train_step(*_batch(2))
    assert seg.step == 2
    assert torch.equal(seg.state_dict()["generator"], rng_before)
    for k, v in seg.model.state_dict().items():
        same = torch.equal(v, before[k]) or (torch.isnan(v).all() and torch.isnan(before[k]).all())
        assert same, k
    for k, v in seg.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
