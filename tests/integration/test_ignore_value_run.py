"""A whole run on masks that carry an ignore value (0/1 plus 255), tracking off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.evaluate.casewise import read_metrics_csv
from medseg.io.raster import read_raster
from medseg.pipeline import run
from tests.conftest import make_dataset, tiny_config

MASKS = "ISIC2018_Task1_Training_GroundTruth"


def test_run_with_ignore_value_and_without_metadata(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", n_cases=8, height=32, width=40)
    (root / "metadata.csv").unlink()  # no patients, no diagnoses: one group per image
    for mask_path in (root / MASKS).glob("*.png"):
        mask = (read_raster(mask_path) > 0).astype(np.uint8)
        mask[:4, :] = 255  # an unlabelled band
        Image.fromarray(mask).save(mask_path)
    cfg = tiny_config(root, tmp_path / "run", data={"ignore_value": 255}, tracking={"enabled": False})
    run_dir = run(cfg)
    datalist = json.loads((run_dir / "datalist.json").read_text())
    assert all(c["patient"] == c["id"] and c["diagnosis"] is None for c in datalist["cases"])
    rows = [r for k in (0, 1) for r in read_metrics_csv(run_dir / f"fold_{k}" / "metrics.csv")]
    assert len(rows) == 8 and all(0.0 <= r["dice"] <= 1.0 for r in rows)
    history = (run_dir / "fold_0" / "history.csv").read_text().splitlines()[1].split(",")
    assert np.isfinite(float(history[1]))  # training loss
    assert not (run_dir / "mlflow.db").exists() and not (run_dir.parent / "mlflow.db").exists()
