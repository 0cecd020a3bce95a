"""Overlay pictures: an image with the reference outline (green) and the prediction outline (red)."""

from __future__ import annotations

import numpy as np

REF_COLOUR = np.array([0, 220, 0], np.uint8)
PRED_COLOUR = np.array([255, 40, 40], np.uint8)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any (H, W) or (H, W, C) image as RGB uint8, min-max scaled unless it already is uint8."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.dtype != np.uint8:
        lo, hi = np.percentile(img, (0.5, 99.5))
        img = (np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3].copy()


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean outline (inner boundary) of a mask."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(mask.astype(bool), mode="inner")
    if thickness > 1:
        edge = ndimage.binary_dilation(edge, iterations=thickness - 1) & mask.astype(bool)
    return edge


def overlay_panels(image: np.ndarray, ref: np.ndarray, pred: np.ndarray, gap: int = 4) -> np.ndarray:
    """Three pictures side by side: the image, the reference outline (green), the prediction (red)."""
    panels = [to_rgb8(image), draw_overlay(image, ref, None), draw_overlay(image, None, pred)]
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1)


def draw_overlay(image: np.ndarray, ref: np.ndarray | None, pred: np.ndarray | None) -> np.ndarray:
    """RGB uint8 picture; outlines are about 0.4% of the image size thick."""
    rgb = to_rgb8(image)
    thickness = max(1, round(max(rgb.shape[:2]) / 250))
    if ref is not None:
        rgb[outline(ref > 0, thickness)] = REF_COLOUR
    if pred is not None:
        rgb[outline(pred > 0, thickness)] = PRED_COLOUR
    return rgb
