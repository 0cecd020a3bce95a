from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medseg.data.synthetic import lesion_mask, render_case
from medseg.io.raster import read_raster


def test_cases_look_like_the_isic_layout(synthetic_root: Path) -> None:
    images = sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").glob("*.jpg"))
    masks = sorted((synthetic_root / "ISIC2018_Task1_Training_GroundTruth").glob("*_segmentation.png"))
    assert len(images) == len(masks) == 12
    img, mask = read_raster(images[0]), read_raster(masks[0])
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
    with open(synthetic_root / "metadata.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["diagnosis"] for r in rows} <= {"common_nevus", "atypical_nevus", "melanoma"}
    assert len({r["patient_id"] for r in rows}) < len(rows)  # some patients have several images


def test_lesion_is_darker_than_skin_and_border_is_irregular() -> None:
    rng = np.random.default_rng(3)
    image, mask = render_case(rng, 96, 128, "melanoma")
    grey = image.mean(axis=2)
    assert grey[mask].mean() < grey[~mask].mean() - 30
    frac = mask.mean()
    assert 0.05 < frac < 0.5
    # irregular: the lesion is not a disc of the same area (its perimeter is longer)
    from skimage.measure import perimeter

    disc_perimeter = 2 * np.sqrt(np.pi * mask.sum())
    assert perimeter(mask) > 1.03 * disc_perimeter


def test_generation_is_deterministic() -> None:
    a = lesion_mask(np.random.default_rng(5), 40, 40)
    b = lesion_mask(np.random.default_rng(5), 40, 40)
    assert np.array_equal(a, b)
