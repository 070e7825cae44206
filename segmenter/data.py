"""Bring (image, mask, prior) arrays to the segmenter's square input size, and back.

Images and priors are resized bilinearly, masks by nearest neighbour, all with ``torch``
interpolation on whole batches. Inputs that are already at the size are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, h, w, 3) uint8, bilinear (anti-aliased when shrinking)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got shape {images.shape}")
    hw = _size(size)
    if images.shape[1:3] == hw:
        return images
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    shrink = images.shape[1] > hw[0] or images.shape[2] > hw[1]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_maps(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W) float maps (priors, probabilities) -> (B, h, w) float32, bilinear."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {maps.shape}")
    hw = _size(size)
    if maps.shape[1:3] == hw:
        return maps.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).unsqueeze(1)
    shrink = maps.shape[1] > hw[0] or maps.shape[2] > hw[1]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return t.squeeze(1).numpy()


def resize_masks(masks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, H, W) bool/0-1 masks -> (B, h, w) of the same dtype, nearest neighbour."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got shape {masks.shape}")
    hw = _size(size)
    if masks.shape[1:3] == hw:
        return masks
    t = torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32)).unsqueeze(1)
    t = F.interpolate(t, size=hw, mode="nearest-exact")
    return t.squeeze(1).numpy().astype(masks.dtype)


def resize_batch(images: np.ndarray, size: int | tuple[int, int], masks: np.ndarray | None = None,
                 priors: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(images, masks, priors)`` at ``size`` (``None`` entries stay ``None``)."""
    return (resize_images(images, size),
            None if masks is None else resize_masks(masks, size),
            None if priors is None else resize_maps(priors, size))


def stack_samples(samples: Sequence, size: int | tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images (B,h,w,3) uint8, masks (B,h,w) bool, phrases)`` of ReferringSamples at ``size``.

    Samples of different original sizes are resized one by one; equal sizes in one batch call.
    """
    hw = _size(size)
    images, masks = [], []
    for s in samples:
        img = np.asarray(s.image)
        msk = np.asarray(s.mask)
        if img.shape[:2] != hw:
            img = resize_images(img[None], hw)[0]
            msk = resize_masks(msk[None], hw)[0]
        images.append(img)
        masks.append(msk.astype(bool))
    return np.stack(images), np.stack(masks), [s.phrase for s in samples]
