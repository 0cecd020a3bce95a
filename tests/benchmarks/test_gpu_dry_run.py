"""benchmarks/gpu/run.sh on the CPU with tiny settings, so that the GPU check cannot rot between the
loans of a GPU: every figure the GPU run must give is printed and written, every part ends well."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import ROOT, SHARED_DATA

pytestmark = pytest.mark.slow
RUN_SH = ROOT / "benchmarks" / "gpu" / "run.sh"
PH2 = SHARED_DATA / "ph2-isic-layout"
CT = SHARED_DATA / "ct" / "totalsegmentator-example"
TRAIN_VARIANTS = ("device.amp_on", "device.amp_off", "standard.amp_on", "standard.amp_off")
# what the GPU run must measure (the list), one key per printed figure
EXPECTED = {
    "cuda_tests",
    *(f"train.{study}.{loader}" for study in ("isic", "ct") for loader in TRAIN_VARIANTS),
    "predict.throughput_ratio",
    "predict.monai_series_per_min",
    "predict.medseg_series_per_min",
    "predict.parts_series_per_min",
    "ph2.plan_seconds",
    "ph2.expected_seconds",
    "ph2.run_seconds",
    "ph2.dice",
}
PARTS = ("tests", "train", "predict", "ph2_plan", "ph2_run")
SCALE = 6  # PH2 pictures (about 765 x 573) shrunk to about 128 x 96


def tiny_carry(tmp: Path) -> Path:
    """A carry folder as prepare.sh makes it, smaller: 22 PH2 cases at a sixth of their size, the
    CT example, and prepare.sh's wheels (linked) where they have been downloaded."""
    if not (PH2.is_dir() and CT.is_dir()):
        pytest.skip(f"the real PH2 and CT data are not present under {SHARED_DATA}")
    carry = tmp / "carry"
    shutil.copytree(CT, carry / "data" / "ct" / CT.name)  # a link would lead outside data.root
    ph2 = carry / "data" / PH2.name
    with open(PH2 / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[::7]
    for folder in ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"):
        (ph2 / folder).mkdir(parents=True)
    for row in rows:
        image_name = f"ISIC2018_Task1-2_Training_Input/{row['image_id']}.jpg"
        image = Image.open(PH2 / image_name)
        size = (image.width // SCALE, image.height // SCALE)
        image.resize(size, Image.BILINEAR).save(ph2 / image_name, quality=95)
        mask_name = f"ISIC2018_Task1_Training_GroundTruth/{row['image_id']}_segmentation.png"
        Image.open(PH2 / mask_name).resize(size, Image.NEAREST).save(ph2 / mask_name)
    with open(ph2 / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    wheels = ROOT / ".gpu-carry" / "wheels"
    if any(wheels.glob("*.whl")):
        (carry / "wheels").symlink_to(wheels)
    return carry


def test_run_sh_gives_every_figure_on_a_cpu(tmp_path):
    carry, out = tiny_carry(tmp_path), tmp_path / "out"
    cmd = ["bash", str(RUN_SH), str(out), "--device", "cpu", "--tiny", "--carry", str(carry)]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "--python", sys.executable], capture_output=True, text=True, timeout=2700)
    print(f"dry run: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads((out / "figures.json").read_text())
    assert set(result["figures"]) == EXPECTED
    assert {k for k, v in result["figures"].items() if v is None} == set()
    for key in EXPECTED:
        assert f"figure {key}: " in proc.stdout
    assert {name: part["status"] for name, part in result["parts"].items()} == dict.fromkeys(PARTS, "ok")
    tests = result["figures"]["cuda_tests"]  # no CUDA here: every one skipped, none failing to load
    assert tests["skipped"] >= 6 and tests["passed"] == tests["failed"] == tests["errors"] == 0
    assert 0 < result["figures"]["ph2.dice"]["mean"] <= 1
    assert result["figures"]["predict.throughput_ratio"] > 0
    assert all(result["figures"][f"train.ct.{k}.amp_off"] > 0 for k in ("device", "standard"))
    for name in ("run.log", "cuda-tests.xml", "ph2-plan.yaml", "ph2-summary.json"):
        assert (out / name).is_file(), name
    if (carry / "wheels").exists():
        assert "install for CPython 3.12" in proc.stdout
