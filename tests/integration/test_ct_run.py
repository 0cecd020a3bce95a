"""Whole 3D CT runs: synthetic volumes (NIfTI and a DICOM series) always; the real CT data when present."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config.load import load_pipeline
from medseg.pipeline import run

from ..conftest import ROOT, SHARED_DATA, TINY_3D, synthetic_ct_overrides


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_synthetic_ct_run_writes_volumes_on_the_input_grid(tmp_path):
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", synthetic_ct_overrides(tmp_path))
    run_dir = run(cfg)
    stats = json.loads((run_dir / "intensity_stats.json").read_text())
    assert 20 < stats["mean"] < 80  # liver and spleen HU of the synthetic organs
    assert "mean: " in (run_dir / "config.yaml").read_text()  # the resolved plan records them
    datalist = json.loads((run_dir / "datalist.json").read_text())
    assert datalist["cases"][0]["images"][0]["path"].endswith(
        "dicom/ct_000"
    )  # the DICOM series case is in the run
    pred_path = next((run_dir / "fold_0" / "predictions").glob("*.nii.gz"))
    case = next(c for c in datalist["cases"] if c["id"] == pred_path.name.removesuffix(".nii.gz"))
    pred = nib.load(pred_path)
    assert list(pred.shape) == case["shape"]
    from medseg.io.readers import volume_geometry

    _, label_affine = volume_geometry(case["label"]["path"])
    np.testing.assert_allclose(pred.affine, label_affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    rows = _rows(run_dir / "fold_0" / "metrics.csv")
    assert {r["label"] for r in rows} == {"1", "2"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["fold_mean"]) == {"liver", "spleen", "mean"}
    # the copy that leaves the run folder names the DICOM series by its pseudonym only
    from mlflow.tracking import MlflowClient

    store = next(p for p in (run_dir / "mlflow.db", run_dir.parent / "mlflow.db") if p.is_file())
    parent = json.loads((run_dir / "run_state.json").read_text())["parent_run_id"]
    copy = MlflowClient(f"sqlite:///{store}").download_artifacts(parent, "datalist.json", str(tmp_path))
    shared = json.loads(Path(copy).read_text())
    assert "ct_000" not in json.dumps([c["images"] for c in shared["cases"]])
    assert any(c["images"][0]["path"].startswith("<p") for c in shared["cases"])


def test_real_ct_run_on_dicom_series_and_nifti(tmp_path):
    root = SHARED_DATA / "ct" / "totalsegmentator-example"
    if not root.is_dir():
        pytest.skip(f"real CT data not present at {root}")
    cfg = load_pipeline(
        ROOT / "pipelines" / "ct.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            "transforms.spacing=[4.0, 4.0, 4.0]",
            "transforms.patch_size=[32, 32, 8]",
            *TINY_3D,
        ],
    )
    run_dir = run(cfg)
    datalist = json.loads((run_dir / "datalist.json").read_text())
    shapes = {c["id"]: c["shape"] for c in datalist["cases"]}
    assert shapes == {"ts_dicom": [512, 512, 20], "ts_3mm": [122, 101, 30]}
    for fold in (0, 1):
        rows = _rows(run_dir / f"fold_{fold}" / "metrics.csv")
        assert {r["label"] for r in rows} == {"1", "2", "3"}  # liver, spleen, kidneys
        for r in rows:
            hd95 = float(r["hd95"])
            assert hd95 == float("inf") or hd95 >= 0
    (pred_path,) = run_dir.glob("fold_*/predictions/ts_dicom.nii.gz")
    pred = nib.load(pred_path)
    assert pred.shape == (512, 512, 20)
    assert nib.aff2axcodes(pred.affine) == ("R", "A", "S")
