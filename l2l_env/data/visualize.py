"""Pictures for people: a sample with its mask (and optional extra maps) overlaid, and a caption."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# RGB colours of the overlays, by role.
OVERLAY_COLOURS: dict[str, tuple[int, int, int]] = {
    "mask": (255, 0, 255),
    "prior": (255, 200, 0),
    "prediction": (0, 160, 255),
    "selection": (0, 255, 255),
}


def overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (0, 255, 0),
            alpha: float = 0.45) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``mask`` (H, W; bool or probability) tinted in ``colour``."""
    weight = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)[..., None] * alpha
    tint = np.asarray(colour, dtype=np.float32)[None, None, :]
    out = image.astype(np.float32) * (1.0 - weight) + tint * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (4-neighbourhood)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, mode="constant")
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return m & ~interior


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor (keeps pixels crisp)."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def captioned_panel(panels: Sequence[np.ndarray], caption: str, scale: int = 4,
                    caption_height: int = 28) -> Image.Image:
    """Panels side by side (upscaled by ``scale``) above a wrapped caption."""
    tiles = [upscale(p, scale) for p in panels]
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + 4 * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, height + caption_height), (255, 255, 255))
    x = 0
    for tile in tiles:
        canvas.paste(Image.fromarray(tile), (x, 0))
        x += tile.shape[1] + 4
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    max_chars = max(8, width // 6)
    lines = [caption[i:i + max_chars] for i in range(0, len(caption), max_chars)][:2]
    for k, line in enumerate(lines):
        draw.text((2, height + 2 + 12 * k), line, fill=(0, 0, 0), font=font)
    return canvas


def sample_panel(image: np.ndarray, mask: np.ndarray, phrase: str, scale: int = 4,
                 extra: dict[str, np.ndarray] | None = None) -> Image.Image:
    """The image, the image with its mask overlaid, and one panel per extra map (e.g. prior)."""
    masked = overlay(image, mask, OVERLAY_COLOURS["mask"], alpha=0.55)
    masked[mask_outline(mask)] = (255, 255, 255)
    panels = [image, masked]
    for name, value in (extra or {}).items():
        panels.append(overlay(image, value, OVERLAY_COLOURS.get(name, (255, 0, 0))))
    return captioned_panel(panels, phrase, scale=scale)


def grid(images: Sequence[Image.Image], columns: int = 4, pad: int = 6) -> Image.Image:
    """Tile PIL images in a grid (row-major)."""
    if not images:
        raise ValueError("grid() needs at least one image")
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (w + pad) - pad, rows * (h + pad) - pad), (255, 255, 255))
    for i, im in enumerate(images):
        canvas.paste(im, ((i % columns) * (w + pad), (i // columns) * (h + pad)))
    return canvas
