"""SynthRef referring phrases: logical forms, their evaluation on a scene, and their wording.

A phrase starts as a small :class:`LogicalForm` over the scene's objects: an attribute filter
(``{"colour": "red", "shape": "circle"}``) followed by at most one selector:

==============  ==========================================================================
kind            meaning (``C`` = the objects that pass the filter)
==============  ==========================================================================
attribute       the one object in ``C`` ("the big blue one")
position        the extreme object of ``C`` (left, right, top, bottom: "the leftmost star") or
                the one object of ``C`` in an image region (corners, middle)
ordinal         the ``index``-th object of ``C`` counted from one side ("the second square
                from the left")
superlative     the largest or smallest object of ``C`` ("the smallest red object")
relation        the object of ``C`` left of / right of / above / below an anchor object, which
                is itself named by a unique attribute filter ("the circle below the red star")
==============  ==========================================================================

:func:`evaluate` returns every object the form *may* denote, using margins so that positions and
sizes that a person could not tell apart count as ambiguous: a form is a valid description of
its referent exactly when ``evaluate(form, ...) == (referent,)``. :func:`candidate_forms` lists
the valid forms of one kind for a referent, and :func:`realise` words a form with synonyms and
paraphrases. Geometry is in pixels, using the visible box of each object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from l2l_env.data.synthref_render import COLOURS, SHAPES, SIZES

KINDS: tuple[str, ...] = ("attribute", "position", "ordinal", "superlative", "relation")
ATTRIBUTES: tuple[str, ...] = ("size", "colour", "shape")  # English adjective order
EXTREME_POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
REGION_POSITIONS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right",
                                     "middle")
POSITIONS: tuple[str, ...] = EXTREME_POSITIONS + REGION_POSITIONS
DIRECTIONS: tuple[str, ...] = EXTREME_POSITIONS  # an ordinal counts from one of these sides
EXTREMES: tuple[str, ...] = ("largest", "smallest")
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
MAX_ORDINAL = 4

Filter = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene as the grammar sees it: attributes and visible geometry."""

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]  # (x, y, w, h) of the visible pixels
    area: int  # number of visible pixels
    cx: float = field(init=False, repr=False, compare=False)  # visible-box centre
    cy: float = field(init=False, repr=False, compare=False)
    size_rank: int = field(init=False, repr=False, compare=False)  # index in SIZES

    def __post_init__(self) -> None:
        for name, values in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
            if getattr(self, name) not in values:
                raise ValueError(f"SceneObject.{name} must be one of {values}, "
                                 f"got {getattr(self, name)!r}")
        object.__setattr__(self, "cx", self.box[0] + self.box[2] / 2.0)
        object.__setattr__(self, "cy", self.box[1] + self.box[3] / 2.0)
        object.__setattr__(self, "size_rank", SIZES.index(self.size))

    def attribute(self, name: str) -> str:
        """The value of attribute ``name`` (one of :data:`ATTRIBUTES`)."""
        if name not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}; expected one of {ATTRIBUTES}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "box": list(self.box), "area": self.area}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneObject:
        box = tuple(int(b) for b in data["box"])
        return cls(str(data["shape"]), str(data["colour"]), str(data["size"]),
                   (box[0], box[1], box[2], box[3]), int(data["area"]))


@dataclass(frozen=True)
class Margins:
    """How far apart things must be (fractions of the image side, or ratios) to count as clear."""

    extreme: float = 0.12  # the extreme object leads the next one by this much
    region_inner: float = 0.36  # a corner object lies within this fraction from both edges
    region_outer: float = 0.55  # ...and no other candidate lies within this fraction
    middle_inner: float = 0.12  # a middle object is this close to the centre on both axes
    middle_outer: float = 0.25  # ...and no other candidate is this close
    ordinal: float = 0.1  # the objects before / after the referent are this far away
    relation: float = 0.12  # minimum centre offset along the relation's axis
    relation_cone: float = 0.5  # clear: |off-axis offset| <= cone * axis offset (27 degrees)
    relation_loose_cone: float = 2.0  # objects within this wider cone ...
    relation_loose: float = 0.03  # ... and this offset could also be meant (ambiguous)
    size_ratio: float = 1.3  # clearly larger: a larger size category and this area ratio


DEFAULT_MARGINS = Margins()


@dataclass(frozen=True)
class LogicalForm:
    """A referring expression before wording (see the module docstring for the kinds)."""

    kind: str
    filter: Filter = ()
    position: str = ""  # position kind: one of POSITIONS
    direction: str = ""  # ordinal kind: one of DIRECTIONS
    index: int = 0  # ordinal kind: 1-based rank
    extreme: str = ""  # superlative kind: one of EXTREMES
    relation: str = ""  # relation kind: one of RELATIONS
    anchor: Filter = ()  # relation kind: the unique filter naming the anchor object

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown phrase kind {self.kind!r}; expected one of {KINDS}")
        for name, value in self.filter + self.anchor:
            if name not in ATTRIBUTES:
                raise ValueError(f"unknown attribute {name!r} in filter; expected one of "
                                 f"{ATTRIBUTES}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "filter": dict(self.filter)}
        if self.kind == "position":
            out["position"] = self.position
        elif self.kind == "ordinal":
            out.update(direction=self.direction, index=self.index)
        elif self.kind == "superlative":
            out["extreme"] = self.extreme
        elif self.kind == "relation":
            out.update(relation=self.relation, anchor=dict(self.anchor))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogicalForm:
        return cls(kind=str(data["kind"]), filter=make_filter(data.get("filter", {})),
                   position=str(data.get("position", "")),
                   direction=str(data.get("direction", "")), index=int(data.get("index", 0)),
                   extreme=str(data.get("extreme", "")), relation=str(data.get("relation", "")),
                   anchor=make_filter(data.get("anchor", {})))


def make_filter(attrs: Mapping[str, str]) -> Filter:
    """A canonical (adjective-ordered) filter from a mapping of attribute name to value."""
    return tuple((name, str(attrs[name])) for name in ATTRIBUTES if name in attrs)


# ---------------------------------------------------------------------------------------------
# Evaluation
#
# Each selector is split into a part that depends only on the scene (ranks, relation status per
# object) and a cheap part that applies it to the filtered candidates, so that
# :func:`candidate_forms` can share the first part across many forms. :func:`evaluate` is the
# composition of both, so there is one definition of what a form means.


def matching(objects: Sequence[SceneObject], flt: Filter) -> list[int]:
    """Indices of the objects that have every attribute value of ``flt``."""
    if not flt:
        return list(range(len(objects)))
    # filters are validated when a LogicalForm is made, so plain getattr is safe (and fast)
    return [i for i, o in enumerate(objects) if all(getattr(o, k) == v for k, v in flt)]


def _axis_value(obj: SceneObject, side: str) -> float:
    """A value that is smallest for the object nearest ``side``."""
    if side == "left":
        return obj.cx
    if side == "right":
        return -obj.cx
    if side == "top":
        return obj.cy
    return -obj.cy


def _extreme(objects: Sequence[SceneObject], cands: list[int], side: str,
             margin: float) -> tuple[int, ...]:
    if len(cands) < 2:  # a lone candidate is not "the leftmost" of anything
        return ()
    values = [_axis_value(objects[i], side) for i in cands]
    best = min(values)
    return tuple(i for i, v in zip(cands, values) if v <= best + margin)


def _region(objects: Sequence[SceneObject], cands: list[int], region: str, size: int,
            m: Margins) -> tuple[int, ...]:
    if region == "middle":
        def near(o: SceneObject, frac: float) -> bool:
            return abs(o.cx - size / 2) <= frac * size and abs(o.cy - size / 2) <= frac * size
        inner = [i for i in cands if near(objects[i], m.middle_inner)]
        outer = [i for i in cands if near(objects[i], m.middle_outer)]
    else:
        vert, horiz = region.split("-")

        def within(o: SceneObject, frac: float) -> bool:
            x = o.cx / size if horiz == "left" else 1.0 - o.cx / size
            y = o.cy / size if vert == "top" else 1.0 - o.cy / size
            return x <= frac and y <= frac
        inner = [i for i in cands if within(objects[i], m.region_inner)]
        outer = [i for i in cands if within(objects[i], m.region_outer)]
    return tuple(outer) if inner else ()


def _rank_ranges(objects: Sequence[SceneObject], cands: list[int], side: str,
                 margin: float) -> list[tuple[int, int, int]]:
    """``(index, lowest, highest)`` rank each candidate could have counted from ``side``."""
    values = [_axis_value(objects[i], side) for i in cands]
    out = []
    for i, vi in zip(cands, values):
        lo = 1 + sum(vj < vi - margin for vj in values)
        hi = sum(vj < vi + margin for vj in values)  # counts i itself: 1 + others
        out.append((i, lo, hi))
    return out


def _ordinal(ranges: list[tuple[int, int, int]], index: int) -> tuple[int, ...]:
    if len(ranges) < 3:  # with two candidates "the second from the left" is just "the right one"
        return ()
    possible = tuple(i for i, lo, hi in ranges if lo <= index <= hi)
    certain = any(lo == hi == index for _, lo, hi in ranges)
    return possible if certain else ()


def _superlative(objects: Sequence[SceneObject], cands: list[int], extreme: str,
                 ratio: float) -> tuple[int, ...]:
    if len(cands) < 2:
        return ()

    def bigger(a: SceneObject, b: SceneObject) -> bool:  # a clearly larger than b
        return a.size_rank > b.size_rank and a.area >= ratio * b.area

    def beats(a: int, b: int) -> bool:
        oa, ob = objects[a], objects[b]
        return bigger(oa, ob) if extreme == "largest" else bigger(ob, oa)

    possible = [i for i in cands if not any(beats(j, i) for j in cands if j != i)]
    certain = any(all(beats(i, j) for j in cands if j != i) for i in possible)
    return tuple(possible) if certain else ()


NOT_RELATED, MAYBE_RELATED, RELATED = 0, 1, 2


def relation_status(objects: Sequence[SceneObject], anchor: int, relation: str, size: int,
                    m: Margins = DEFAULT_MARGINS) -> list[int]:
    """Per object: RELATED (clearly ``relation`` of the anchor), MAYBE_RELATED or NOT_RELATED.

    Offsets are between visible-box centres. Clearly: the offset along the relation's axis is at
    least ``m.relation`` of the image and half the objects' mean extent, within a narrow cone.
    Maybe: any positive offset beyond ``m.relation_loose`` within a wider cone.
    """
    a = objects[anchor]
    out = []
    for i, o in enumerate(objects):
        dx, dy = o.cx - a.cx, o.cy - a.cy
        if relation in ("left", "right"):
            along, across, extent = (-dx if relation == "left" else dx), dy, o.box[2] + a.box[2]
        else:
            along, across, extent = (-dy if relation == "above" else dy), dx, o.box[3] + a.box[3]
        if i == anchor or along <= m.relation_loose * size \
                or abs(across) > m.relation_loose_cone * along:
            out.append(NOT_RELATED)
        elif (along >= max(m.relation * size, 0.25 * extent)
              and abs(across) <= m.relation_cone * along):
            out.append(RELATED)
        else:
            out.append(MAYBE_RELATED)
    return out


def _related(status: list[int], cands: list[int]) -> tuple[int, ...]:
    possible = tuple(i for i in cands if status[i] != NOT_RELATED)
    return possible if any(status[i] == RELATED for i in possible) else ()


def evaluate(form: LogicalForm, objects: Sequence[SceneObject], image_size: int,
             margins: Margins = DEFAULT_MARGINS) -> tuple[int, ...]:
    """The indices of the objects ``form`` may denote in a scene (``()``: none clearly does).

    A result of exactly one index means the phrase picks out that object unambiguously: it
    clearly satisfies the form, and no other object comes close to satisfying it.
    """
    cands = matching(objects, form.filter)
    if form.kind == "attribute":
        return tuple(cands)
    if form.kind == "position":
        if form.position in EXTREME_POSITIONS:
            return _extreme(objects, cands, form.position, margins.extreme * image_size)
        if form.position in REGION_POSITIONS:
            return _region(objects, cands, form.position, image_size, margins)
        raise ValueError(f"unknown position {form.position!r}; expected one of {POSITIONS}")
    if form.kind == "ordinal":
        if form.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {form.direction!r}; expected one of {DIRECTIONS}")
        return _ordinal(_rank_ranges(objects, cands, form.direction,
                                     margins.ordinal * image_size), form.index)
    if form.kind == "superlative":
        if form.extreme not in EXTREMES:
            raise ValueError(f"unknown extreme {form.extreme!r}; expected one of {EXTREMES}")
        return _superlative(objects, cands, form.extreme, margins.size_ratio)
    if form.relation not in RELATIONS:
        raise ValueError(f"unknown relation {form.relation!r}; expected one of {RELATIONS}")
    anchors = matching(objects, form.anchor)
    if not form.anchor or len(anchors) != 1:
        return ()
    return _related(relation_status(objects, anchors[0], form.relation, image_size, margins),
                    cands)


# ---------------------------------------------------------------------------------------------
# Candidate forms


def _subsets(obj: SceneObject, names: Sequence[str], max_len: int,
             min_len: int = 0) -> list[Filter]:
    return [tuple((n, getattr(obj, n)) for n in combo)
            for k in range(min_len, max_len + 1) for combo in combinations(names, k)]


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def candidate_forms(kind: str, objects: Sequence[SceneObject], referent: int, image_size: int,
                    rng: np.random.Generator, margins: Margins = DEFAULT_MARGINS,
                    ) -> tuple[list[LogicalForm], list[LogicalForm]]:
    """The valid forms of ``kind`` for ``referent``: ``(preferred, fallback)``.

    Every returned form evaluates to exactly ``(referent,)`` (the same selectors as
    :func:`evaluate`, with the scene-only parts computed once). Preferred forms need their
    selector (the filter alone matches several objects); fallback forms are true and unique but
    redundant ("the red circle in the top left" with one red circle in view). ``rng`` picks the
    anchor wording of relations (one unique filter per anchor object).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown phrase kind {kind!r}; expected one of {KINDS}")
    ref = objects[referent]
    want = (referent,)
    preferred: list[LogicalForm] = []
    fallback: list[LogicalForm] = []
    if kind == "attribute":
        for flt in _subsets(ref, ATTRIBUTES, 3, min_len=1):
            if tuple(matching(objects, flt)) == want:
                preferred.append(LogicalForm("attribute", flt))
        return preferred, fallback
    names = ("colour", "shape") if kind == "superlative" else ATTRIBUTES
    filters = [(flt, matching(objects, flt)) for flt in _subsets(ref, names, 2)]
    if kind == "relation":
        for a, anchor_obj in enumerate(objects):
            if a == referent:
                continue
            unique = [f for f in _subsets(anchor_obj, ATTRIBUTES, 2, min_len=1)
                      if matching(objects, f) == [a]]
            if not unique:
                continue
            with_shape = [f for f in unique if any(k == "shape" for k, _ in f)]
            anchor = _pick(rng, with_shape or unique)
            for rel in RELATIONS:
                status = relation_status(objects, a, rel, image_size, margins)
                if status[referent] != RELATED:
                    continue
                for flt, cands in filters:
                    if _related(status, cands) == want:
                        form = LogicalForm("relation", flt, relation=rel, anchor=anchor)
                        informative = sum(i != a for i in cands) >= 2
                        (preferred if informative else fallback).append(form)
        return preferred, fallback
    for flt, cands in filters:
        informative = len(cands) >= 2
        if kind == "position":
            for pos in EXTREME_POSITIONS:
                if _extreme(objects, cands, pos, margins.extreme * image_size) == want:
                    preferred.append(LogicalForm("position", flt, position=pos))
            for pos in REGION_POSITIONS:
                if _region(objects, cands, pos, image_size, margins) == want:
                    form = LogicalForm("position", flt, position=pos)
                    (preferred if informative else fallback).append(form)
        elif kind == "ordinal":
            for side in DIRECTIONS:
                ranges = _rank_ranges(objects, cands, side, margins.ordinal * image_size)
                for index in range(2, MAX_ORDINAL + 1):
                    if _ordinal(ranges, index) == want:
                        preferred.append(LogicalForm("ordinal", flt, direction=side, index=index))
        else:
            for ext in EXTREMES:
                if _superlative(objects, cands, ext, margins.size_ratio) == want:
                    preferred.append(LogicalForm("superlative", flt, extreme=ext))
    return preferred, fallback


# ---------------------------------------------------------------------------------------------
# Wording

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round shape", "circle"),
    "square": ("square", "box", "square", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond", "rhombus", "diamond"),
    "hexagon": ("hexagon",),
    "cross": ("cross", "plus sign", "cross"),
    "heart": ("heart",),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
    "purple": ("purple", "violet", "purple"), "orange": ("orange",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny", "small"),
    "medium": ("medium", "medium-sized", "mid-sized"),
    "large": ("large", "big", "large", "big"),
}
GENERIC_NOUNS: tuple[str, ...] = ("object", "shape", "thing")
for _names, _words in ((SHAPES, SHAPE_WORDS), (COLOURS, COLOUR_WORDS), (SIZES, SIZE_WORDS)):
    assert set(_names) == set(_words), f"synonym table out of date: {sorted(_names)}"

POSITION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "left": ("the {np} on the left", "the leftmost {np}", "the {np} furthest to the left",
             "left {np}", "the {np} on the left side"),
    "right": ("the {np} on the right", "the rightmost {np}", "the {np} furthest to the right",
              "right {np}", "the {np} on the right side"),
    "top": ("the {np} at the top", "the topmost {np}", "the top {np}", "the highest {np}",
            "the {np} nearest the top"),
    "bottom": ("the {np} at the bottom", "the bottom {np}", "the lowest {np}",
               "the bottommost {np}", "the {np} nearest the bottom"),
    "middle": ("the {np} in the middle", "the {np} in the centre", "the {np} in the center",
               "the central {np}"),
}
for _vert in ("top", "bottom"):
    for _horiz in ("left", "right"):
        _upper = "upper" if _vert == "top" else "lower"
        POSITION_TEMPLATES[f"{_vert}-{_horiz}"] = (
            f"the {{np}} in the {_vert} {_horiz} corner", f"the {{np}} at the {_vert} {_horiz}",
            f"the {_vert}-{_horiz} {{np}}", f"the {{np}} in the {_upper} {_horiz}",
            f"{_vert} {_horiz} {{np}}")
ORDINAL_WORDS: dict[int, str] = {1: "first", 2: "second", 3: "third", 4: "fourth"}
ORDINAL_TEMPLATES: tuple[str, ...] = ("the {ord} {np} from the {side}",
                                      "{ord} {np} from the {side}",
                                      "the {np} that is {ord} from the {side}")
SUPERLATIVE_WORDS: dict[str, tuple[str, ...]] = {
    "largest": ("largest", "biggest", "largest"),
    "smallest": ("smallest", "tiniest", "smallest"),
}
SUPERLATIVE_TEMPLATES: tuple[str, ...] = ("the {sup} {np}", "the {sup} {np}", "{sup} {np}")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of", "on the left of"),
    "right": ("right of", "to the right of", "on the right of"),
    "above": ("above", "above", "over"),
    "below": ("below", "below", "under", "beneath"),
}
RELATION_TEMPLATES: tuple[str, ...] = ("the {np} {rel} the {anchor}",
                                       "the {np} that is {rel} the {anchor}",
                                       "{np} {rel} the {anchor}")


def noun_phrase(flt: Filter, rng: np.random.Generator, allow_one: bool = True) -> str:
    """Words for a filter without article: adjectives (size, colour) and a noun.

    Without a shape the noun is generic ("object", "shape", "thing", or "one" after an
    adjective or when ``allow_one``: "the red one", "the one on the left").
    """
    attrs = dict(flt)
    words = []
    if "size" in attrs:
        words.append(_pick(rng, SIZE_WORDS[attrs["size"]]))
    if "colour" in attrs:
        words.append(_pick(rng, COLOUR_WORDS[attrs["colour"]]))
    if "shape" in attrs:
        words.append(_pick(rng, SHAPE_WORDS[attrs["shape"]]))
    else:
        nouns = GENERIC_NOUNS + (("one",) if words or allow_one else ())
        words.append(_pick(rng, nouns))
    return " ".join(words)


def realise(form: LogicalForm, rng: np.random.Generator) -> str:
    """A sentence for ``form``, with synonyms and a paraphrase template drawn by ``rng``."""
    if form.kind == "attribute":
        np_ = noun_phrase(form.filter, rng, allow_one=False)
        return np_ if rng.random() < 0.15 else f"the {np_}"
    if form.kind == "position":
        template = _pick(rng, POSITION_TEMPLATES[form.position])
        one_ok = not template.startswith(("left ", "right ", "top ", "bottom "))
        return template.format(np=noun_phrase(form.filter, rng, allow_one=one_ok))
    if form.kind == "ordinal":
        return _pick(rng, ORDINAL_TEMPLATES).format(
            ord=ORDINAL_WORDS[form.index], np=noun_phrase(form.filter, rng), side=form.direction)
    if form.kind == "superlative":
        return _pick(rng, SUPERLATIVE_TEMPLATES).format(
            sup=_pick(rng, SUPERLATIVE_WORDS[form.extreme]), np=noun_phrase(form.filter, rng))
    return _pick(rng, RELATION_TEMPLATES).format(
        np=noun_phrase(form.filter, rng), rel=_pick(rng, RELATION_WORDS[form.relation]),
        anchor=noun_phrase(form.anchor, rng, allow_one=False))
