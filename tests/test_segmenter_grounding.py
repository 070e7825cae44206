"""The segmenter's grounding parts: directional context, the phrase's own kernel, object-attribute
heads and prior warping (simulated loose / shifted MLLM boxes)."""

import numpy as np
import pytest
import torch

from segmenter import Segmenter, SegmenterConfig
from segmenter.guidance import directional_context
from segmenter.prior_noise import warp_priors

pytestmark = pytest.mark.usefixtures("one_thread")


def test_directional_context_sees_only_the_other_side():
    maps = torch.zeros(1, 1, 3, 4)
    maps[0, 0, 1, 0] = 1.0  # one match at row 1, column 0
    ctx = directional_context(maps)
    assert ctx.shape == (1, 8, 3, 4)
    left_peak, left_share, right_peak = ctx[0, 0], ctx[0, 1], ctx[0, 2]
    # everything right of the match in its row sees a match on its left; the match itself does not
    assert left_peak[1].tolist() == [0, 1, 1, 1] and left_peak[0].sum() == 0
    assert left_share[1].tolist() == [0, 1, 1, 1]
    assert right_peak[1].tolist() == [0, 0, 0, 0]
    up_peak, down_peak = ctx[0, 4], ctx[0, 6]
    assert up_peak[:, 0].tolist() == [0, 0, 1] and down_peak[:, 0].tolist() == [1, 0, 0]


def _box_priors(n: int, size: int = 32) -> torch.Tensor:
    p = torch.zeros(n, 1, size, size)
    p[:, :, 8:16, 10:22] = 1.0
    return p


def test_warp_priors_moves_boxes_reproducibly_and_leaves_the_rest():
    p = _box_priors(64)
    a = warp_priors(p, 0.5, torch.Generator().manual_seed(3))
    b = warp_priors(p, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = (a - p).abs().flatten(1).amax(1) > 1e-3
    assert 16 < int(changed.sum()) < 48  # about half were warped
    assert torch.equal(a[~changed], p[~changed])
    assert float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6
    # rate 0 draws nothing: the generator is untouched
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    assert warp_priors(p, 0.0, g) is p and torch.equal(g.get_state(), state)


def test_segmenter_prior_warp_is_seeded(text_encoder, tiny_segmenter):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    priors = _box_priors(4)[:, 0].numpy()
    targets = (rng.random((4, 32, 32)) > 0.6).astype(np.float32)
    phrases = ["the red one", "left", "big star", "the second"]
    losses = []
    for _ in range(2):
        seg = Segmenter(SegmenterConfig(image_size=32, prior_warp=1.0, **tiny_segmenter),
                        text_encoder=text_encoder)
        losses.append([seg.train_step(images, priors, phrases, targets)["loss"] for _ in range(2)])
    assert losses[0] == losses[1]
    with pytest.raises(ValueError, match="prior_warp"):
        SegmenterConfig(prior_warp=1.5)


def test_object_heads_train_and_check_their_targets(text_encoder, tiny_segmenter):
    cfg = SegmenterConfig(image_size=32, object_classes=(3, 2), text_head=True, spatial_context=2,
                          lr_warmup_steps=1, lr=5e-3, **tiny_segmenter)
    seg = Segmenter(cfg, text_encoder=text_encoder)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    objects = np.full((2, 2, 32, 32), 0, np.int64)
    objects[:, 0, 4:12, 4:12], objects[:, 1, 4:12, 4:12] = 2, 1
    objects[:, :, 20:, 20:] = -1  # unknown: ignored
    targets = (objects[:, 0] == 2).astype(np.float32)
    phrases = ["the red square", "the top left one"]
    first = seg.train_step(images, None, phrases, targets, objects=objects)
    assert "objects" in first and np.isfinite(first["objects"])
    for _ in range(15):
        last = seg.train_step(images, None, phrases, targets, objects=objects)
    assert last["objects"] < first["objects"]
    plain = seg.train_step(images, None, phrases, targets)  # no targets: heads left alone
    assert "objects" not in plain
    with pytest.raises(ValueError, match="objects must be"):
        seg.train_step(images, None, phrases, targets, objects=objects[:, :1])
    with pytest.raises(ValueError, match="object_classes"):
        SegmenterConfig(object_classes=(0,))


def test_reasoning_starts_as_identity_and_then_links_every_position():
    from segmenter.reasoning import Reasoner

    torch.manual_seed(0)
    reasoner = Reasoner(width=8, text_dim=6, layers=2)
    x = torch.randn(2, 8, 4, 4)
    coords = torch.randn(1, 2, 4, 4)
    words = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert torch.equal(reasoner(x, coords, words, mask), x)  # zero-initialised outputs
    for p in reasoner.parameters():  # as after training: every projection in use
        torch.nn.init.normal_(p, std=0.3)
    x.requires_grad_(True)
    out = reasoner(x, coords, words, mask)
    out[0, :, 0, 0].sum().backward()
    far = x.grad[0, :, 3, 3].abs().sum()  # the far corner reaches the first position
    assert far > 0 and x.grad[1].abs().sum() == 0  # ... within its own sample only
    words2 = words.clone()
    words2[0, 2] += 10.0  # a padded token changes nothing
    assert torch.allclose(reasoner(x, coords, words2, mask), out)


def test_segmenter_with_reasoning_trains_and_checks_its_settings(text_encoder, tiny_segmenter):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    targets = (rng.random((2, 32, 32)) > 0.6).astype(np.float32)
    phrases = ["the leftmost circle", "the second square from the top"]
    for stride in (4, 8):
        cfg = SegmenterConfig(image_size=32, reason_layers=1, reason_stride=stride,
                              use_prior=False, lr_warmup_steps=1, **tiny_segmenter)
        seg = Segmenter(cfg, text_encoder=text_encoder)
        first = seg.train_step(images, None, phrases, targets)["loss"]
        for _ in range(10):
            last = seg.train_step(images, None, phrases, targets)["loss"]
        assert np.isfinite(last) and last < first
        assert seg.predict(images, None, phrases).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="reason_stride"):
        SegmenterConfig(reason_layers=1, reason_stride=16)
    with pytest.raises(ValueError, match="decoder_width"):
        SegmenterConfig(reason_layers=1, decoder_width=10)
