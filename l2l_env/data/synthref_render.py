"""SynthRef pixels: shapes as vectorised implicit functions, object colours and noisy backgrounds.

Every shape is a boolean function of a coordinate grid, the object's centre and its nominal
radius ``r`` (half its extent, in pixels). Shapes are scaled so that equal radii look about equally
big. Nothing here loops over pixels; loops run over objects (at most a handful per scene).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIZES: tuple[str, ...] = ("small", "medium", "large")
"""Size categories, smallest first (their order is what "largest"/"smallest" compare)."""

SIZE_RADIUS: dict[str, float] = {"small": 0.08, "medium": 0.115, "large": 0.16}
"""Nominal radius of each size category as a fraction of the image side (jittered by +-4%)."""

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40),
    "green": (45, 165, 60),
    "blue": (45, 85, 225),
    "yellow": (235, 215, 45),
    "purple": (145, 60, 190),
    "orange": (250, 145, 25),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)

MIN_RADIUS_PX: dict[str, float] = {"hexagon": 6.5}
"""Shapes that look like another one below this radius (a tiny hexagon reads as a circle)."""

EXTENT = 1.3
"""No shape reaches further than ``EXTENT * r`` from its centre (used to keep shapes in frame)."""

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _star_polygon(u: np.ndarray, v: np.ndarray, points: int, outer: float, inner: float,
                  theta0: float) -> np.ndarray:
    """Inside test of a star-shaped polygon with ``points`` outer vertices (``v`` points up).

    The angle is folded into one half-sector, where the boundary is the straight edge from the
    outer vertex ``(outer, 0)`` to the inner vertex ``(inner, pi/points)`` in polar coordinates.
    A regular polygon is the case ``inner = outer * cos(pi / points)``.
    """
    half = np.pi / points
    rho = np.hypot(u, v)
    phi = np.mod(np.arctan2(v, u) - theta0, 2.0 * half)
    phi = half - np.abs(phi - half)
    boundary = outer * inner * np.sin(half) / (outer * np.sin(phi) + inner * np.sin(half - phi))
    return rho <= boundary


def _regular(points: int, outer: float, theta0: float, v_shift: float = 0.0) -> ShapeFn:
    return lambda u, v: _star_polygon(u, v + v_shift, points, outer,
                                      outer * np.cos(np.pi / points), theta0)


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.9


def _diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(u) + np.abs(v) <= 1.2


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _star_polygon(u, v + 0.12, 5, 1.3, 0.55, np.pi / 2)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 1.0) & (av <= 0.36)) | ((au <= 0.36) & (av <= 1.0))


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.15, v * 1.15 + 0.12
    s = x * x + y * y - 1.0
    return s * s * s - x * x * y * y * y <= 0.0


SHAPE_FUNCS: dict[str, ShapeFn] = {
    "circle": _circle,
    "square": _square,
    "triangle": _regular(3, 1.25, np.pi / 2, v_shift=1.25 / 4),  # centroid moved to box centre
    "star": _star,
    "diamond": _diamond,
    "hexagon": _regular(6, 1.05, 0.0),
    "cross": _cross,
    "heart": _heart,
}
SHAPES: tuple[str, ...] = tuple(SHAPE_FUNCS)


def shape_mask(shape: str, image_size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """The pixels of a ``image_size`` square image covered by ``shape`` centred at ``(cx, cy)``.

    The implicit function is evaluated only on the window that can contain the shape.
    """
    try:
        fn = SHAPE_FUNCS[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}") from None
    reach = EXTENT * radius + 1.0
    x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)), image_size)
    y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)), image_size)
    mask = np.zeros((image_size, image_size), dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    u = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / radius)[None, :]
    v = ((cy - np.arange(y0, y1, dtype=np.float32) - 0.5) / radius)[:, None]
    mask[y0:y1, x0:x1] = fn(u, v)
    return mask


def _upsample_matrix(size: int, cells: int) -> np.ndarray:
    """A ``size x (cells + 1)`` linear-interpolation matrix from a coarse grid to pixels."""
    t = np.linspace(0.0, cells, size)
    lo = np.minimum(t.astype(int), cells - 1)
    frac = t - lo
    m = np.zeros((size, cells + 1))
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise: a standard-normal ``(cells+1)^2`` grid, bilinearly upsampled."""
    grid = rng.normal(0.0, 1.0, (cells + 1, cells + 1, channels))
    m = _upsample_matrix(size, cells)
    rows = (m @ grid.reshape(cells + 1, -1)).reshape(size, cells + 1, channels)  # (i, b, c)
    return (rows.transpose(0, 2, 1) @ m.T).transpose(0, 2, 1)  # (i, j, c)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random textured, low-saturation background, ``size x size x 3`` float (0..255 scale).

    Base grey with a slight tint, a linear gradient, two octaves of low-frequency noise (mostly
    shared by the channels, so colours stay muted) and pixel noise.
    """
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    base = rng.uniform(55.0, 195.0) + rng.normal(0.0, 8.0, 3)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = coords[None, :] * np.cos(angle) + coords[:, None] * np.sin(angle)
    shared = rng.uniform(-35.0, 35.0) * ramp[..., None]
    coarse = int(rng.integers(2, 6))
    shared = shared + rng.uniform(8.0, 22.0) * smooth_noise(rng, size, coarse, 1)
    shared = shared + rng.uniform(2.0, 8.0) * smooth_noise(rng, size, max(size // 5, 2), 1)
    tint = 4.0 * smooth_noise(rng, size, coarse, 3)
    pixel = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(2.0, 6.0)
    return (shared + tint + base).astype(np.float32) + pixel


def paint_objects(rng: np.random.Generator, canvas: np.ndarray, labels: np.ndarray,
                  colours: list[str], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Paint every labelled pixel with its object's colour; returns the uint8 image.

    ``labels`` holds the index of the visible object per pixel (-1: background). Each object
    gets a jittered base colour, a soft directional shading and per-pixel colour noise.
    """
    size = labels.shape[0]
    coords = np.arange(size, dtype=np.float32) + 0.5
    n = len(colours)
    base = np.array([COLOUR_RGB[c] for c in colours], dtype=np.float64).reshape(n, 3)
    base = (base + rng.normal(0.0, 7.0, (n, 3))).astype(np.float32)
    light = rng.normal(0.0, 1.0, 2)
    light = light / max(np.linalg.norm(light), 1e-6)
    inside = labels >= 0
    idx = np.where(inside, labels, 0)
    dx = (coords[None, :] - centres[idx, 0]) / radii[idx]
    dy = (coords[:, None] - centres[idx, 1]) / radii[idx]
    shade = 1.0 + 0.09 * np.clip(dx * light[0] + dy * light[1], -1.0, 1.0)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * 8.0
    obj = base[idx] * shade[..., None] + noise
    img = np.where(inside[..., None], obj, canvas)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
