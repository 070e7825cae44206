"""SynthRef scenes: choose objects' attributes, place them with partial occlusion, render.

Objects are drawn in order, so later objects occlude earlier ones. A position is accepted only if
every object already placed keeps at least ``min_visible`` of its pixels visible (the new object
is fully visible when placed) and no two objects of the same colour touch (their common border
would be invisible). The label map records which object each pixel shows, so the exact
mask of an object is ``labels == index``.

Compositions control distractors: ``"shape"`` favours objects that share a shape with another
object (different colour), ``"colour"`` objects that share a colour (different shape), ``"mix"``
a natural mixture of both and of unrelated objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l2l_env.data.synthref_grammar import SceneObject
from l2l_env.data.synthref_render import (COLOURS, EXTENT, MIN_RADIUS_PX, SHAPES, SIZE_RADIUS,
                                          SIZES, background, paint_objects, shape_mask)

COMPOSITIONS: dict[str, tuple[float, float, float]] = {
    # probability that a new object copies (shape only, colour only, both) of an earlier one
    "mix": (0.3, 0.3, 0.06),
    "shape": (0.55, 0.1, 0.0),
    "colour": (0.1, 0.55, 0.0),
}
PLACEMENT_TRIES = 25


@dataclass(frozen=True)
class Scene:
    """A rendered scene: the image, the visible-object label map and the objects."""

    image: np.ndarray  # HxWx3 uint8
    labels: np.ndarray  # HxW int8: index of the visible object, -1 for background
    objects: tuple[SceneObject, ...]
    visible_fraction: tuple[float, ...]  # per object: visible pixels / pixels of the full shape


def _other(rng: np.random.Generator, values: tuple[str, ...], avoid: str) -> str:
    choices = [v for v in values if v != avoid]
    return choices[int(rng.integers(len(choices)))]


def allowed_sizes(shape: str, image_size: int) -> tuple[str, ...]:
    """The size categories in which ``shape`` stays recognisable at ``image_size``."""
    min_px = MIN_RADIUS_PX.get(shape, 0.0)
    sizes = tuple(s for s in SIZES if SIZE_RADIUS[s] * image_size * 0.96 >= min_px)
    return sizes or SIZES[-1:]


def sample_attributes(rng: np.random.Generator, count: int, composition: str,
                      image_size: int = 64) -> list[tuple[str, str, str]]:
    """``count`` (shape, colour, size) triples drawn according to ``composition``.

    Sizes are drawn from :func:`allowed_sizes` of the shape.
    """
    try:
        p_shape, p_colour, p_both = COMPOSITIONS[composition]
    except KeyError:
        raise ValueError(f"unknown composition {composition!r}; expected one of "
                         f"{sorted(COMPOSITIONS)}") from None
    out: list[tuple[str, str, str]] = []
    for _ in range(count):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        if out:
            u = rng.random()
            src_shape, src_colour, _ = out[int(rng.integers(len(out)))]
            if u < p_shape:
                shape, colour = src_shape, _other(rng, COLOURS, src_colour)
            elif u < p_shape + p_colour:
                shape, colour = _other(rng, SHAPES, src_shape), src_colour
            elif u < p_shape + p_colour + p_both:
                shape, colour = src_shape, src_colour
        sizes = allowed_sizes(shape, image_size)
        out.append((shape, colour, sizes[int(rng.integers(len(sizes)))]))
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel (8-neighbourhood: diagonal contact counts too)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _visible_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def sample_scene(rng: np.random.Generator, image_size: int, count: int, composition: str,
                 min_visible: float = 0.6) -> Scene:
    """Draw and render one scene of up to ``count`` objects.

    An object that finds no acceptable position within a few tries is left out, so the scene
    may hold fewer objects than asked for (callers check).
    """
    labels = np.full((image_size, image_size), -1, dtype=np.int8)
    visible = np.zeros(count, dtype=np.int64)  # visible pixels per placed object
    placed: list[tuple[str, str, str]] = []
    full_area: list[int] = []
    centres: list[tuple[float, float]] = []
    radii: list[float] = []
    for shape, colour, size in sample_attributes(rng, count, composition, image_size):
        radius = SIZE_RADIUS[size] * image_size * rng.uniform(0.96, 1.04)
        lo, hi = EXTENT * radius + 0.5, image_size - EXTENT * radius - 0.5
        for _ in range(PLACEMENT_TRIES):
            cx, cy = rng.uniform(lo, hi, 2)
            mask = shape_mask(shape, image_size, cx, cy, radius)
            if placed:
                n = len(placed)
                same = np.array([False] + [c == colour for _, c, _ in placed])  # by label + 1
                if same.any() and same[labels[_dilate(mask)] + 1].any():
                    continue  # same-coloured objects never touch: their border would vanish
                lost = np.bincount(labels[mask] + 1, minlength=n + 1)[1:]
                if np.any(visible[:n] - lost < min_visible * np.asarray(full_area)):
                    continue
                visible[:n] -= lost
            labels[mask] = len(placed)
            visible[len(placed)] = int(mask.sum())
            full_area.append(int(mask.sum()))
            placed.append((shape, colour, size))
            centres.append((float(cx), float(cy)))
            radii.append(float(radius))
            break
    objects = []
    for i, (shape, colour, size) in enumerate(placed):
        vis = labels == i
        objects.append(SceneObject(shape, colour, size, _visible_box(vis), int(vis.sum())))
    image = paint_objects(rng, background(rng, image_size), labels,
                          [c for _, c, _ in placed], np.asarray(centres).reshape(-1, 2),
                          np.asarray(radii))
    fractions = tuple(o.area / a for o, a in zip(objects, full_area))
    return Scene(image=image, labels=labels, objects=tuple(objects), visible_fraction=fractions)
