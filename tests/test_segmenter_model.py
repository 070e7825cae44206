"""Segmenter forward: shapes at two sizes, ablation switches, batched prediction, text cache."""

import numpy as np
import pytest
import torch

from segmenter import Segmenter, SegmenterConfig, TextEncoder, resize_batch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tiny_segmenter):
    """The shared tiny architecture with this module's training settings."""
    return {**tiny_segmenter, "lr_warmup_steps": 1, "lr": 5e-3, "prior_dropout": 0.0}


def _data(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    priors = np.zeros((n, size, size), np.float32)
    for i in range(n):
        y, x = rng.integers(0, size // 2, 2)
        priors[i, y:y + size // 3, x:x + size // 3] = 1.0
    targets = (rng.random((n, size, size)) > 0.7).astype(np.float32)
    phrases = [f"the {c} shape" for c in ("red", "blue", "green", "left", "big", "small")][:n]
    return images, priors, phrases, targets


def _trained(text_encoder, tiny, steps: int = 3, **kw) -> Segmenter:
    seg = Segmenter(SegmenterConfig(image_size=32, **{**tiny, **kw}), text_encoder=text_encoder)
    images, priors, phrases, targets = _data(4, 32)
    for _ in range(steps):
        seg.train_step(images, priors, phrases, targets, None)
    return seg


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_probabilities(text_encoder, tiny, size):
    seg = Segmenter(SegmenterConfig(image_size=size, **tiny), text_encoder=text_encoder)
    images, priors, phrases, targets = _data(3, size)
    out = seg.train_step(images, priors, phrases, targets, np.ones_like(targets))
    assert set(out) >= {"loss", "bce", "dice", "lr"} and np.isfinite(out["loss"])
    probs = seg.predict(images, priors, phrases)
    assert probs.shape == (3, size, size) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1
    assert seg.predict(images, priors, phrases, teacher=True).shape == (3, size, size)
    tokens, mask = seg.text_features(phrases)
    img = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    logits = seg.model.eval()(img, torch.from_numpy(priors)[:, None], tokens, mask)
    assert logits.shape == (3, 1, size, size)
    with pytest.raises(ValueError, match="image_size"):
        seg.predict(images[:, :-1], priors, phrases)


def test_resize_helper_brings_arrays_to_size():
    images, priors, _, targets = _data(2, 48)
    img, msk, pri = resize_batch(images, 32, targets > 0.5, priors)
    assert img.shape == (2, 32, 32, 3) and img.dtype == np.uint8
    assert msk.shape == (2, 32, 32) and msk.dtype == bool
    assert pri.shape == (2, 32, 32) and pri.dtype == np.float32 and 0 <= pri.min() <= pri.max() <= 1
    assert resize_batch(img, 32)[0] is img


def _randomised(seg: Segmenter) -> Segmenter:
    """Perturb every weight, so zero-initialised (identity) guidance paths are active too."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in seg.model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return seg


def _logits(seg: Segmenter, images, priors, phrases) -> np.ndarray:
    tokens, mask = seg.text_features(phrases) if seg.config.use_text else (None, None)
    img = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return seg.model.eval()(img, torch.from_numpy(priors)[:, None], tokens, mask).numpy()


def _prior_and_text_dependence(seg: Segmenter) -> tuple[float, float]:
    """Largest logit change when the prior moves, and when the phrase changes."""
    images, priors, phrases, _ = _data(4, 32, seed=5)
    base = _logits(seg, images, priors, phrases)
    moved = _logits(seg, images, np.roll(priors, 9, axis=2), phrases)
    other = _logits(seg, images, priors, ["the rightmost tiny purple star"] * 4)
    return float(np.abs(base - moved).max()), float(np.abs(base - other).max())


@pytest.mark.parametrize("guidance", [True, False])
def test_prior_and_text_switches_remove_their_input(text_encoder, tiny, guidance):
    def dependence(**kw):
        return _prior_and_text_dependence(_randomised(_trained(text_encoder, tiny, steps=1, **kw)))

    d_prior, d_text = dependence(use_guidance=guidance)
    assert d_prior > 1e-4 and d_text > 1e-4
    d_prior, d_text = dependence(use_guidance=guidance, use_prior=False)
    assert d_prior == 0.0 and d_text > 1e-4
    d_prior, d_text = dependence(use_guidance=guidance, use_text=False)
    assert d_prior > 1e-4 and d_text == 0.0


def test_guidance_switch_changes_the_network(text_encoder, tiny):
    on = _randomised(_trained(text_encoder, tiny, steps=1))
    off = _randomised(_trained(text_encoder, tiny, steps=1, use_guidance=False))
    assert hasattr(on.model, "guides") and not hasattr(off.model, "guides")
    assert hasattr(off.model, "films")
    images, priors, phrases, _ = _data(4, 32)
    diff = on.predict(images, priors, phrases) - off.predict(images, priors, phrases)
    assert np.abs(diff).max() > 1e-4


def test_predict_in_batches_equals_one_by_one(text_encoder, tiny):
    seg = _trained(text_encoder, tiny, steps=2)
    images, priors, phrases, _ = _data(5, 32, seed=3)
    together = seg.predict(images, priors, phrases, batch_size=256)
    chunked = seg.predict(images, priors, phrases, batch_size=2)
    single = np.concatenate([seg.predict(images[i:i + 1], priors[i:i + 1], phrases[i:i + 1])
                             for i in range(5)])
    np.testing.assert_allclose(together, single, atol=1e-5)
    np.testing.assert_allclose(together, chunked, atol=1e-5)


def test_text_features_are_cached_per_phrase(tiny):
    enc = TextEncoder("minilm", cache_size=2)
    tokens, mask = enc(["the red circle on the left", "a square"])
    assert enc.cache_misses == 2 and enc.cache_hits == 0
    assert tokens.shape[0] == 2 and tokens.shape[2] == 384 and mask.dtype == torch.bool
    assert mask[0].all() and not mask[1].all() and torch.all(tokens[1][~mask[1]] == 0)
    again, mask2 = enc(["a square", "the red circle on the left", "a square"])
    assert enc.cache_misses == 2 and enc.cache_hits == 3
    assert torch.equal(again[1], tokens[0]) and torch.equal(again[0], again[2])
    n = int(mask[1].sum())
    assert torch.equal(again[0, :n], tokens[1, :n])
    enc(["a third phrase"])
    assert enc.cache_size_now() == 2  # LRU bound
    seg = Segmenter(SegmenterConfig(image_size=32, **tiny), text_encoder=enc)
    hits = enc.cache_hits
    seg.text_features(["a square"])
    assert enc.cache_hits == hits + 1


def test_bad_inputs_and_missing_timm_raise_clear_errors(text_encoder, tiny):
    with pytest.raises(ValueError, match="multiple of 32"):
        SegmenterConfig(image_size=50)
    with pytest.raises(ValueError, match="unknown SegmenterConfig key"):
        Segmenter(SegmenterConfig(image_size=32, **tiny), text_encoder=text_encoder, widht=3)
    seg = Segmenter(SegmenterConfig(image_size=32, **tiny), text_encoder=text_encoder)
    images, priors, phrases, targets = _data(2, 32)
    with pytest.raises(ValueError, match="weights"):
        seg.train_step(images, priors, phrases[:2], targets, -np.ones_like(targets))
    with pytest.raises(ValueError, match="phrases"):
        seg.predict(images, priors, phrases[:1])
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="timm"):
            Segmenter(SegmenterConfig(image_size=32, backbone="timm:resnet18", **tiny),
                      text_encoder=text_encoder)


def test_prior_trust_is_per_sample_and_stage_and_responds_to_the_prior(text_encoder, tiny_segmenter):
    import pytest

    seg = Segmenter(SegmenterConfig(image_size=32, **tiny_segmenter), text_encoder=text_encoder)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    priors = np.zeros((3, 32, 32), np.float32)
    priors[0, 4:12, 4:12] = 1.0
    priors[1, 20:30, 20:30] = 1.0
    trust = seg.prior_trust(images, priors, ["a", "b", "c"])
    assert trust.shape == (3, 4) and ((trust > 0) & (trust < 1)).all()
    moved = seg.prior_trust(images, np.roll(priors, 10, axis=1), ["a", "b", "c"])
    assert not np.allclose(trust, moved)
    off = Segmenter(SegmenterConfig(image_size=32, use_prior=False, **tiny_segmenter),
                    text_encoder=text_encoder)
    with pytest.raises(ValueError, match="use_prior=True"):
        off.prior_trust(images, priors, ["a", "b", "c"])
