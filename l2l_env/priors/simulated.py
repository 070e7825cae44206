"""A simulated MLLM grounder whose errors follow published REC accuracy (for SynthRef).

No MLLM can run here, so on SynthRef a simulator plays one. It sees only what an MLLM could:
the image size, the referent's box and every object's box and attributes (never the mask). Each
sample falls into one of four outcomes:

* ``correct``: the true box with jitter, IoU >= 0.5 with it by construction;
* ``wrong_object``: the (jittered) box of another object, preferring distractors that share
  attributes with the referent (as MLLMs confuse "the red circle" with another red thing);
* ``miss``: a box of about the referent's size somewhere else in the image;
* ``no_answer``: no box at all (an unparseable or empty answer): ``Grounding.no_prior``.

Every wrong outcome has IoU < 0.5 with the true box by construction, so Acc@0.5 is exactly the
fraction of ``correct`` samples. That fraction is made tight with a low-discrepancy sequence: the
outcome of a sample is decided by ``u = frac(offset(seed) + sent_id * 0.6180339887...)`` (a Weyl
sequence over the sentence id, which the refer format makes unique in a data set), so on any few
hundred samples the measured accuracy is within a fraction of a point of the preset's, where
independent draws would scatter by a point or more. Jitter, the distractor drawn and the score
come from a generator seeded by ``(seed, ref_id, sent_id)``: deterministic per sample.

Presets (Acc@0.5 on RefCOCO val / testA / testB, as published): ``qwen2.5-vl-7b`` 90.0 / 92.5 /
85.4 (the default), ``florence-2-large`` zero-shot 56.3 / 61.6 / 51.4, ``kosmos-2`` zero-shot
52.3 / 57.4 / 47.3, ``mid-75`` (75.0 / 78.5 / 70.0: not a published model but a grounder halfway
between the zero-shot detectors and Qwen2.5-VL, for the prior-quality sweep), and ``perfect`` (the
true box). ``train`` and any other split use val's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from l2l_env.data.types import Box, ReferringSample
from l2l_env.priors.base import Grounding, PriorProvider, box_iou

GOLDEN = 0.6180339887498949
"""The Weyl step: frac(k * GOLDEN) is the best-spread sequence over consecutive integers k."""

OUTCOMES: tuple[str, ...] = ("correct", "wrong_object", "miss", "no_answer")


@dataclass(frozen=True)
class SimPreset:
    """An MLLM's grounding behaviour.

    :param accuracy: Acc@0.5 per split, fractions (``val`` serves every split not listed).
    :param jitter: std of each box edge's displacement, as a fraction of the box side.
    :param wrong_object: share of the errors that pick another object.
    :param no_answer: share of the errors without any box; the rest are misses.
    :param attribute_bias: a distractor's weight is multiplied by this for every attribute value
        it shares with the referent.
    :param score_correct: mean confidence logit of correct groundings.
    :param score_wrong: mean confidence logit of wrong groundings (misses are 0.5 lower).
    :param score_spread: std of the confidence logit (overlap between correct and wrong).
    """

    name: str
    accuracy: dict[str, float] = field(default_factory=dict)
    jitter: float = 0.06
    wrong_object: float = 0.7
    no_answer: float = 0.03
    attribute_bias: float = 3.0
    score_correct: float = 1.6
    score_wrong: float = 0.4
    score_spread: float = 0.9

    def accuracy_for(self, split: str | None) -> float:
        """The target Acc@0.5 of ``split`` (``train``, ``None`` and unknown splits use ``val``)."""
        if split in self.accuracy:
            return self.accuracy[split]
        return self.accuracy["val"]


def _acc(val: float, test_a: float, test_b: float) -> dict[str, float]:
    return {"val": val / 100, "testA": test_a / 100, "testB": test_b / 100}


MISTAKES_PRESET = "mistakes"
"""The preset that only errs (training priors for ``prior_swap``; ``load_mistake_priors``)."""

PRESETS: dict[str, SimPreset] = {
    "qwen2.5-vl-7b": SimPreset("qwen2.5-vl-7b", _acc(90.0, 92.5, 85.4), jitter=0.06,
                               wrong_object=0.75, no_answer=0.02, score_correct=1.8,
                               score_wrong=0.5, score_spread=0.9),
    "florence-2-large": SimPreset("florence-2-large", _acc(56.3, 61.6, 51.4), jitter=0.10,
                                  wrong_object=0.5, no_answer=0.05, score_correct=1.0,
                                  score_wrong=0.2, score_spread=1.0),
    "mid-75": SimPreset("mid-75", _acc(75.0, 78.5, 70.0), jitter=0.08, wrong_object=0.6,
                        no_answer=0.03, score_correct=1.4, score_wrong=0.35, score_spread=0.95),
    "kosmos-2": SimPreset("kosmos-2", _acc(52.3, 57.4, 47.3), jitter=0.11, wrong_object=0.5,
                          no_answer=0.05, score_correct=0.9, score_wrong=0.2, score_spread=1.0),
    # Only errors, distributed like a strong MLLM's: training priors that teach the segmenter when
    # not to trust one (a distractor sharing the referent's attributes, or a misplaced box).
    MISTAKES_PRESET: SimPreset(MISTAKES_PRESET, _acc(0.0, 0.0, 0.0), jitter=0.06, wrong_object=0.75,
                          no_answer=0.0, score_correct=1.8, score_wrong=0.5, score_spread=0.9),
    "perfect": SimPreset("perfect", _acc(100.0, 100.0, 100.0), jitter=0.0, wrong_object=0.0,
                         no_answer=0.0, score_correct=math.inf, score_spread=0.0),
}
DEFAULT_PRESET = "qwen2.5-vl-7b"


def weyl_uniform(key: int, seed: int = 0) -> float:
    """``frac(offset(seed) + key * GOLDEN)``: a low-discrepancy uniform over integer keys."""
    offset = float(np.random.default_rng([abs(int(seed)), 0x5EED]).random())
    return math.fmod(offset + (int(key) * GOLDEN) % 1.0, 1.0)


def _round(box: tuple[float, float, float, float]) -> Box:
    return (round(box[0], 2), round(box[1], 2), round(box[2], 2), round(box[3], 2))


def _clip(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    """``xyxy`` clipped to the image, as a rounded ``xywh`` box (``None`` if under 1 px)."""
    x0, x1 = max(0.0, min(x0, x1)), min(float(width), max(x0, x1))
    y0, y1 = max(0.0, min(y0, y1)), min(float(height), max(y0, y1))
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return _round((x0, y0, x1 - x0, y1 - y0))


def _jitter(box: Box, scale: float, rng: np.random.Generator, width: int,
            height: int) -> Box | None:
    x, y, w, h = box
    d = rng.normal(0.0, scale, size=4) * np.array([w, h, w, h])
    return _clip(x + d[0], y + d[1], x + w + d[2], y + h + d[3], width, height)


class SimulatedGrounder(PriorProvider):
    """The simulated MLLM (see the module docstring).

    :param preset: a name in :data:`PRESETS` or a :class:`SimPreset`.
    :param seed: changes which samples go wrong and how.
    """

    name = "simulated"
    max_tries = 16

    def __init__(self, preset: str | SimPreset = DEFAULT_PRESET, seed: int = 0) -> None:
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise ValueError(f"unknown simulated preset {preset!r}; "
                                 f"expected one of {sorted(PRESETS)}")
            preset = PRESETS[preset]
        self.preset = preset
        self.seed = int(seed)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "preset": asdict(self.preset), "seed": self.seed}

    def outcome(self, sample: ReferringSample, split: str | None = None) -> str:
        """The outcome planned for ``sample`` (before fallbacks, e.g. no distractor -> miss)."""
        p = self.preset
        acc = p.accuracy_for(split)
        u = weyl_uniform(sample.sent_id, self.seed)
        if u < acc:
            return "correct"
        v = (u - acc) / max(1.0 - acc, 1e-12)
        if v >= 1.0 - p.no_answer:
            return "no_answer"
        return "wrong_object" if v < p.wrong_object else "miss"

    def ground_batch(self, samples: Sequence[ReferringSample],
                     split: str | None = None) -> list[Grounding]:
        return [self._ground(s, split) for s in samples]

    # -- one sample ------------------------------------------------------------------------

    def _ground(self, sample: ReferringSample, split: str | None) -> Grounding:
        height, width = int(sample.image.shape[0]), int(sample.image.shape[1])
        true_box = tuple(float(v) for v in sample.box)
        rng = np.random.default_rng([abs(self.seed), sample.ref_id & 0xFFFFFFFF,
                                     sample.sent_id & 0xFFFFFFFF, 0x9E37])
        kind = self.outcome(sample, split)
        size = (height, width)
        if kind == "no_answer":
            return Grounding(box=None, score=0.0, parsed=False, raw="simulated:no_answer",
                             image_size=size)
        if kind == "correct":
            box = self._correct(true_box, rng, width, height)
        else:
            box = None
            if kind == "wrong_object":
                box = self._wrong_object(sample, true_box, rng, width, height)
            if box is None:
                kind = "miss"
                box = self._miss(true_box, rng, width, height)
        return Grounding(box=box, score=self._score(kind, rng), raw=f"simulated:{kind}",
                         image_size=size)

    def _score(self, kind: str, rng: np.random.Generator) -> float:
        p = self.preset
        z = rng.normal()
        if kind == "correct":
            mu = p.score_correct
        else:
            mu = p.score_wrong - (0.5 if kind == "miss" else 0.0)
        if math.isinf(mu):
            return 1.0
        return round(1.0 / (1.0 + math.exp(-(mu + p.score_spread * z))), 4)

    def _correct(self, true_box: Box, rng: np.random.Generator, width: int, height: int) -> Box:
        scale = self.preset.jitter
        for _ in range(self.max_tries):
            if scale <= 0:
                break
            box = _jitter(true_box, scale, rng, width, height)
            if box is not None and box_iou(box, true_box) >= 0.5:
                return box
            scale *= 0.7
        return true_box

    def _wrong_object(self, sample: ReferringSample, true_box: Box, rng: np.random.Generator,
                      width: int, height: int) -> Box | None:
        objects = sample.objects
        ref = sample.referent
        if not 0 <= ref < len(objects) and objects:
            ious = [box_iou(o.box, true_box) for o in objects]
            best = int(np.argmax(ious))
            ref = best if ious[best] >= 0.9 else -1
        ref_attrs = objects[ref].attributes if 0 <= ref < len(objects) else {}
        candidates, weights = [], []
        for i, obj in enumerate(objects):
            if i == ref or box_iou(obj.box, true_box) >= 0.5:
                continue
            if ref_attrs:
                shared = sum(obj.attributes.get(k) == v for k, v in ref_attrs.items())
            else:
                shared = int(0 <= ref < len(objects) and obj.category == objects[ref].category)
            candidates.append(obj.box)
            weights.append(self.preset.attribute_bias ** shared)
        if not candidates:
            return None
        w = np.asarray(weights, dtype=np.float64)
        pick = int(rng.choice(len(candidates), p=w / w.sum()))
        target = tuple(float(v) for v in candidates[pick])
        scale = self.preset.jitter
        for _ in range(self.max_tries):
            box = _jitter(target, scale, rng, width, height) if scale > 0 else None
            if box is not None and box_iou(box, true_box) < 0.5:
                return box
            scale *= 0.7
            if scale <= 1e-3:
                break
        tx, ty, tw, th = target
        box = _clip(tx, ty, tx + tw, ty + th, width, height)
        return box if box is not None and box_iou(box, true_box) < 0.5 else None

    def _miss(self, true_box: Box, rng: np.random.Generator, width: int, height: int) -> Box:
        x, y, w, h = true_box
        for _ in range(self.max_tries):
            s = math.exp(rng.normal(0.0, 0.3))
            bw, bh = min(w * s, width), min(h * s, height)
            bx = rng.uniform(0.0, max(width - bw, 0.0))
            by = rng.uniform(0.0, max(height - bh, 0.0))
            box = _clip(bx, by, bx + bw, by + bh, width, height)
            if box is not None and box_iou(box, true_box) < 0.5:
                return box
        if w >= 2 and h >= 2:  # a quarter of the referent's box: IoU 0.25 with it
            return _round((x, y, w / 2, h / 2))
        cx, cy = x + w / 2, y + h / 2  # a 1-pixel box in the image corner farthest away
        return _round((0.0 if cx > width / 2 else width - 1.0,
                       0.0 if cy > height / 2 else height - 1.0, 1.0, 1.0))
