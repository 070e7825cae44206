"""A short overfit: a handful of tiny scenes are learned to IoU > 0.9 (training really learns)."""

import numpy as np
import pytest

from segmenter import Segmenter, SegmenterConfig, fit


pytestmark = pytest.mark.usefixtures("one_thread")


COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230)}


def _scenes(size: int = 32):
    """Six scenes, each a red square, a green disc and a blue square in three of the four
    quadrants; the phrase names one of them; the prior is a soft box on it, except in the last
    scene, where it points at another object (the network must follow the text there)."""
    yy, xx = np.mgrid[:size, :size]
    q = size // 4
    centres = [(q, q), (q, 3 * q), (3 * q, q), (3 * q, 3 * q)]
    rng = np.random.default_rng(0)
    images, masks, priors, phrases = [], [], [], []
    for i in range(6):
        img = np.full((size, size, 3), 30, np.uint8)
        boxes, shape_masks = {}, {}
        for slot, (name, rgb) in zip(rng.permutation(4)[:3], COLOURS.items()):
            cy, cx = centres[slot]
            r = 4 + int(rng.integers(0, 3))
            if name == "green":
                m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            else:
                m = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
            img[m] = rgb
            shape_masks[name] = m
            boxes[name] = (cx - r - 1, cy - r - 1, cx + r + 2, cy + r + 2)
        target = list(COLOURS)[i % 3]
        prior_name = target if i != 5 else list(COLOURS)[(i + 1) % 3]
        x0, y0, x1, y1 = boxes[prior_name]
        prior = np.zeros((size, size), np.float32)
        prior[y0:y1, x0:x1] = 0.8
        images.append(img)
        masks.append(shape_masks[target])
        priors.append(prior)
        phrases.append(f"the {target} {'disc' if target == 'green' else 'square'}")
    return np.stack(images), np.stack(masks).astype(np.float32), np.stack(priors), phrases


def test_overfit_a_handful_of_samples():
    images, masks, priors, phrases = _scenes()
    seg = Segmenter(SegmenterConfig(image_size=32, stem_width=12, widths=(16, 24, 32, 32),
                                    depths=(1, 1, 1, 1), decoder_width=24, text_dim=32, lr=5e-3,
                                    lr_warmup_steps=10, total_steps=200, prior_dropout=0.0,
                                    ema_momentum=0.9))
    result = fit(seg, images, priors, phrases, masks, steps=200, batch_size=6, progress=False,
                 log_every=50)
    assert result.steps == 200 and seg.step == 200
    probs = seg.predict(images, priors, phrases)
    pred = probs > 0.5
    gt = masks > 0.5
    iou = (pred & gt).sum((1, 2)) / (pred | gt).sum((1, 2))
    assert iou.min() > 0.9, iou
    assert result.history[-1]["loss"] < result.history[0]["loss"]
