"""`medseg plan` on a CUDA device: calibration steps timed and their peak taken from CUDA's
allocator, and a batch planned to fill the memory given fitting in it (skipped without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg.data.datalist import build_datalist
from medseg.plan import rules
from medseg.plan.calibrate import measure
from medseg.plan.study import plan_study
from medseg.registry import build_network

from ..conftest import tiny_config

pytestmark = pytest.mark.cuda
GIB = 2**30


def test_calibration_times_steps_and_takes_the_peak_from_the_allocator(synthetic_root, tmp_path):
    """Peaks include the weights, gradients and AdamW's two moments, and grow with the batch."""
    peaks = {}
    for batch in (2, 8):
        cfg = tiny_config(
            synthetic_root,
            tmp_path / f"run{batch}",
            transforms={"spatial_size": [128, 128]},
            model={"name": "UNet", "args": {"channels": [16, 32, 64], "strides": [2, 2], "num_res_units": 1}},
            train={"device": "cuda", "batch_size": batch},
        )
        cases, _ = build_datalist(cfg.data, 2, 3)
        torch.cuda.empty_cache()
        measured = measure(cfg, cases, steps=1)
        assert measured.seconds_per_step > 0 and measured.seconds_per_val_case > 0
        assert measured.seconds_per_load > 0
        weights = sum(p.numel() * 4 for p in build_network(cfg.network).parameters())  # float32 bytes
        assert measured.peak_bytes >= 4 * weights
        peaks[batch] = measured.peak_bytes
    assert peaks[8] > peaks[2]


def _pictures(root: Path, n_cases: int, size: int) -> Path:
    """Noisy RGB pictures with a disc as the lesion, in the ISIC layout (memory does not depend on
    what the pictures show, and these take a fraction of the synthetic generator's time)."""
    rng = np.random.default_rng(0)
    images, masks = root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_cases):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (size * rng.uniform(0.1, 0.25)) ** 2
        picture = rng.integers(0, 80, (size, size, 3)) + 120 * (~disc)[..., None]
        Image.fromarray(picture.astype(np.uint8)).save(images / f"IMG{i:03d}.jpg", quality=90)
        Image.fromarray((255 * disc).astype(np.uint8)).save(masks / f"IMG{i:03d}_segmentation.png")
    return root


def test_a_batch_planned_to_fill_the_memory_fits_it(tmp_path, monkeypatch):
    """512 x 512 pictures, nnU-Net's 8 GB reference: the rules plan DynUNet (32 base features) with
    a batch of 12 whose feature maps fill it (the 5% data cap lifted, which would hold the batch
    at 2 for so few cases); the calibration's CUDA peak must lie within the 8 GB, and above the
    2 GB that the float16 feature maps alone take."""
    monkeypatch.setattr(rules, "MAX_DATASET_COVERED", 1.0)
    data = _pictures(tmp_path / "data", n_cases=14, size=512)
    out = tmp_path / "plan" / "big.yaml"
    summary = plan_study(data, "isic", out, device="cuda", memory_gb=8.0, budget=None)
    assert summary["device"] == "cuda" and summary["network"] == "DynUNet"
    assert summary["patch"] == [512, 512] and summary["batch_size"] == 12
    peak = summary["peak_bytes"]
    assert 2 * GIB < peak <= 8 * GIB, f"peak {peak / GIB:.2f} GiB"
    assert "on cuda" in out.read_text()
    plan = json.loads((out.parent / "big.plan.json").read_text())
    assert plan["peak_bytes"] == peak and plan["seconds_per_step"] > 0
