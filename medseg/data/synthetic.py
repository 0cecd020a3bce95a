"""A synthetic dermoscopy-like data set in the ISIC 2018 Task 1 layout.

Each case is a skin-coloured field with vignetting, one pigmented lesion with an irregular border
(a radius modulated by random harmonics), inner texture, and dark hair-like curves drawn over skin
and lesion alike (they are not part of the mask). Images are JPEG, masks PNG 0/255, and
``metadata.csv`` carries ``image_id``, ``patient_id`` and ``diagnosis`` like the real data.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from medseg.config.models import DataConfig, SyntheticConfig

DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma")


def lesion_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A filled irregular blob: radius r(theta) = r0 (1 + sum_k a_k cos(k theta + phi_k))."""
    cy = height / 2 + rng.uniform(-0.15, 0.15) * height
    cx = width / 2 + rng.uniform(-0.15, 0.15) * width
    r0 = rng.uniform(0.18, 0.32) * min(height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    theta = np.arctan2(yy - cy, (xx - cx) / rng.uniform(0.8, 1.25))
    radius = np.full_like(theta, r0)
    for k in range(2, 8):
        radius += r0 * rng.uniform(0.0, 0.12 / math.sqrt(k)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    dist = np.hypot(yy - cy, xx - cx)
    return dist <= radius


def render_case(
    rng: np.random.Generator, height: int, width: int, diagnosis: str
) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, bool mask) pair."""
    mask = lesion_mask(rng, height, width)
    skin = np.array([218, 168, 146], float) + rng.normal(0, 8, 3)
    field = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)), sigma=min(height, width) / 12)
    img = skin[None, None, :] + 14 * field[..., None] / (field.std() + 1e-6)

    darkness = {"common_nevus": 0.45, "atypical_nevus": 0.55, "melanoma": 0.65}[diagnosis]
    lesion_rgb = np.array([135, 85, 60], float) * (1.25 - darkness) + rng.normal(0, 6, 3)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)), sigma=2.5)
    inner = ndimage.distance_transform_edt(mask)
    core = np.clip(inner / (inner.max() + 1e-6), 0, 1)
    soft = ndimage.gaussian_filter(mask.astype(float), sigma=1.2)
    lesion = lesion_rgb[None, None, :] * (1 - 0.35 * core[..., None]) + 22 * texture[..., None]
    img = img * (1 - soft[..., None]) + lesion * soft[..., None]

    yy, xx = np.mgrid[0:height, 0:width]
    r = np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2))
    img *= np.clip(1.15 - 0.45 * r**2, 0.25, 1.0)[..., None]
    img += rng.normal(0, 4, img.shape)

    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 6))):
        start = rng.uniform([0, 0], [width, height])
        end = rng.uniform([0, 0], [width, height])
        bend = (start + end) / 2 + rng.normal(0, min(height, width) / 6, 2)
        t = np.linspace(0, 1, 40)[:, None]
        pts = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
        shade = int(rng.integers(20, 60))
        draw.line(
            [tuple(p) for p in pts], fill=(shade, shade - 10, shade - 15), width=int(rng.integers(1, 3))
        )
    return np.asarray(canvas), mask


def generate_dataset(data: DataConfig, spec: SyntheticConfig) -> Path:
    """Write the synthetic dermoscopy set into ``data.root`` (same seed, same files).

    Args:
        data: the ``data`` section; ``data.root`` receives the ISIC layout.
        spec: number of cases, picture size and seed.

    Returns:
        ``data.root``.
    """
    root = Path(data.root)
    img_dir, mask_dir = root / data.image_dir, root / data.mask_dir
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    n_patients = spec.n_patients or max(2, math.ceil(spec.n_cases * 2 / 3))
    rows = []
    for i in range(spec.n_cases):
        case_id = f"SYN{i:04d}"
        patient = f"P{int(rng.integers(0, n_patients)):03d}"
        diagnosis = DIAGNOSES[int(rng.integers(0, len(DIAGNOSES)))]
        image, mask = render_case(rng, spec.height, spec.width, diagnosis)
        Image.fromarray(image).save(img_dir / f"{case_id}.jpg", quality=92)
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_dir / f"{case_id}{data.mask_suffix}.png")
        rows.append({"image_id": case_id, "patient_id": patient, "diagnosis": diagnosis})
    if data.metadata:
        with open(root / data.metadata, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image_id", "patient_id", "diagnosis"])
            writer.writeheader()
            writer.writerows(rows)
    return root
