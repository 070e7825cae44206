"""Parsers from an MLLM's grounding answer to a :class:`Grounding` in original image pixels.

Each family answers boxes in its own frame; one parser per family maps it to ``(x, y, w, h)`` in
pixels of the original image:

* **Qwen2.5-VL**: JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`` in absolute pixels of
  the *resized* model input (``smart_resize`` to multiples of 28), so the caller passes that size.
* **Qwen2-VL**: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` normalised to ``0..1000``.
* **Qwen3-VL**: JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`` like Qwen2.5-VL, but
  relative to the image: each coordinate is normalised to ``0..1000`` of its axis (Qwen3-VL went
  back to Qwen2-VL's relative frame; the Qwen3-VL fine-tuning guide's grounding data format), so
  no resized size is needed.
* **Florence-2**: location tokens ``<loc_0>..<loc_999>``, four per box, each the index of one of
  1000 bins along its axis (a bin's centre is the coordinate, as Florence-2's own post-processor).

All parsers are pure functions of the text. They tolerate code fences, chatter around the answer,
several boxes (the highest ``score``/``confidence`` if the answer gives one, else the first),
``x1 > x2`` (swapped) and coordinates out of range (clamped to the image). An answer with no box, a
degenerate (zero-area after clamping) or non-finite box gives ``Grounding(box=None,
parsed=False, raw=answer)``: no prior, flagged, never a made-up box.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from l2l_env.priors.base import Grounding

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_BBOX_KEY_RE = re.compile(r"\"?(?:bbox_2d|bbox|box)\"?\s*:\s*\[([^\[\]]*)\]")
_LIST4_RE = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_QWEN2_TAGGED_RE = re.compile(
    rf"<\|box_start\|>\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
    r"\s*(?:<\|box_end\|>)?")
_QWEN2_BARE_RE = re.compile(
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
_LOC_RE = re.compile(r"<loc_(\d+)>")
_LOC_RUN_RE = re.compile(r"(?:<loc_\d+>\s*){4,}")

QWEN2_SCALE = 1000.0
"""Qwen2-VL's and Qwen3-VL's box coordinates are normalised to ``0..QWEN2_SCALE``."""
FLORENCE_BINS = 1000
"""Florence-2 quantises each axis into this many location bins."""


def unparsed(raw: str, image_size: tuple[int, int] | None = None) -> Grounding:
    """The no-prior answer for text that holds no usable box (flagged ``parsed=False``)."""
    return Grounding(box=None, score=0.0, parsed=False, raw=raw, image_size=image_size)


def finalize_box(x1: float, y1: float, x2: float, y2: float, height: int, width: int, raw: str,
                 score: float = 1.0) -> Grounding:
    """A corner box in original pixels -> :class:`Grounding` (swapped, clamped, checked).

    :param height: original image height (pixels); coordinates are clamped to ``[0, height]``.
    :param width: original image width (pixels).
    :returns: a grounding with ``(x, y, w, h)``, or :func:`unparsed` for a non-finite or
        zero-area box.
    """
    size = (int(height), int(width))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, score)):
        return unparsed(raw, size)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    x1, x2 = (min(max(v, 0.0), float(width)) for v in (x1, x2))
    y1, y2 = (min(max(v, 0.0), float(height)) for v in (y1, y2))
    if x2 - x1 <= 0.0 or y2 - y1 <= 0.0:
        return unparsed(raw, size)
    return Grounding(box=(x1, y1, x2 - x1, y2 - y1), score=min(max(score, 0.0), 1.0), parsed=True,
                     raw=raw, image_size=size)


def _json_candidates(text: str) -> Iterator[str]:
    """Fenced blocks first, then the outermost ``[...]``/``{...}`` spans, then the whole text."""
    for m in _FENCE_RE.finditer(text):
        yield m.group(1).strip()
    for open_, close in (("[", "]"), ("{", "}")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            yield text[i:j + 1]
    yield text.strip()


def _walk_boxes(obj: Any) -> Iterator[tuple[list[float], float | None]]:
    """Every ``bbox_2d``/``bbox`` (or a bare 4-number list) in a JSON value, with its score."""
    if isinstance(obj, dict):
        for key in ("bbox_2d", "bbox", "box"):
            if key in obj:
                coords = obj[key]
                score = obj.get("score", obj.get("confidence"))
                score = float(score) if isinstance(score, (int, float)) else None
                if _is_four_numbers(coords):
                    yield [float(v) for v in coords], score
                else:
                    yield from _walk_boxes(coords)
                return
        for value in obj.values():
            yield from _walk_boxes(value)
    elif isinstance(obj, list):
        if _is_four_numbers(obj):
            yield [float(v) for v in obj], None
        else:
            for value in obj:
                yield from _walk_boxes(value)


def _is_four_numbers(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 4
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v))


def _pick(boxes: list[tuple[list[float], float | None]]) -> tuple[list[float], float]:
    """The highest-scored box if any carries a score, else the first (score 1)."""
    scored = [(b, s) for b, s in boxes if s is not None]
    if scored:
        return max(scored, key=lambda bs: bs[1])
    return boxes[0][0], 1.0


def json_boxes(text: str) -> list[tuple[list[float], float | None]]:
    """All ``[x1, y1, x2, y2]`` boxes (with scores) found in a JSON-ish answer, in order."""
    for candidate in _json_candidates(text):
        try:
            obj = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        boxes = list(_walk_boxes(obj))
        if boxes:
            return boxes
    # Not valid JSON (truncated, single quotes, trailing commas): fall back to regexes.
    boxes = []
    for m in _BBOX_KEY_RE.finditer(text):
        nums = re.findall(_NUM, m.group(1))
        if len(nums) == 4:
            boxes.append(([float(v) for v in nums], None))
    if not boxes:
        boxes = [([float(v) for v in m.groups()], None) for m in _LIST4_RE.finditer(text)]
    return boxes


def _scaled_json_box(text: str, sy: float, sx: float, original_hw: tuple[int, int]
                     ) -> Grounding:
    """The picked JSON box of ``text`` with x scaled by ``sx`` and y by ``sy``."""
    boxes = json_boxes(text)
    if not boxes:
        return unparsed(text, original_hw)
    (x1, y1, x2, y2), score = _pick(boxes)
    return finalize_box(x1 * sx, y1 * sy, x2 * sx, y2 * sy, *original_hw, raw=text, score=score)


def parse_qwen25(text: str, resized_hw: tuple[int, int], original_hw: tuple[int, int]) -> Grounding:
    """Parse a Qwen2.5-VL answer (absolute pixels of the resized input) to original pixels.

    :param resized_hw: ``(height, width)`` of the image as the model saw it (after
        ``smart_resize``); the answer's coordinates refer to it.
    :param original_hw: ``(height, width)`` of the original image.
    """
    return _scaled_json_box(text, original_hw[0] / float(resized_hw[0]),
                            original_hw[1] / float(resized_hw[1]), original_hw)


def parse_qwen3(text: str, original_hw: tuple[int, int]) -> Grounding:
    """Parse a Qwen3-VL answer: JSON ``bbox_2d`` normalised to ``0..1000`` of each axis."""
    return _scaled_json_box(text, original_hw[0] / QWEN2_SCALE, original_hw[1] / QWEN2_SCALE,
                            original_hw)


def parse_qwen2(text: str, original_hw: tuple[int, int]) -> Grounding:
    """Parse a Qwen2-VL answer ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (0..1000)."""
    m = _QWEN2_TAGGED_RE.search(text) or _QWEN2_BARE_RE.search(text)
    if m is None:
        return unparsed(text, original_hw)
    coords = [float(v) for v in m.groups()]
    h, w = original_hw
    x1, y1, x2, y2 = coords
    return finalize_box(x1 * w / QWEN2_SCALE, y1 * h / QWEN2_SCALE, x2 * w / QWEN2_SCALE,
                        y2 * h / QWEN2_SCALE, h, w, raw=text)


def parse_florence2(text: str, original_hw: tuple[int, int]) -> Grounding:
    """Parse a Florence-2 answer: the first run of four ``<loc_i>`` tokens is the box.

    A bin index ``b`` maps to ``(b + 0.5) * size / 1000`` (the bin's centre); indices above 999
    are clamped to the last bin.
    """
    run = _LOC_RUN_RE.search(text)
    if run is None:
        return unparsed(text, original_hw)
    bins = [min(int(v), FLORENCE_BINS - 1) for v in _LOC_RE.findall(run.group(0))[:4]]
    h, w = original_hw
    x1, y1, x2, y2 = ((b + 0.5) * s / FLORENCE_BINS for b, s in zip(bins, (w, h, w, h)))
    return finalize_box(x1, y1, x2, y2, h, w, raw=text)
