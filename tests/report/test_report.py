from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medseg.evaluate.casewise import write_metrics_csv
from medseg.report.pages import write_report


def _row(case: str, dice: float, hd95: float) -> dict:
    return {
        "case": case,
        "label": 1,
        "dice": dice,
        "iou": dice,
        "jaccard_thresholded": dice,
        "hd95": hd95,
        "nsd": dice,
    }


def test_summary_tables_and_self_contained_html(tmp_path: Path) -> None:
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", [_row("a", 0.8, 2.0), _row("b", 0.6, 4.0)])
    write_metrics_csv(tmp_path / "fold_1" / "metrics.csv", [_row("c", 1.0, 0.0), _row("d", 0.0, math.inf)])
    (tmp_path / "datalist.json").write_text(
        json.dumps({"cases": [{}] * 5, "bad_cases": [{"id": "e", "reason": "no mask"}]})
    )
    summary = write_report(tmp_path, "t")
    fold0 = summary["folds"]["0"]["label_1"]
    assert fold0["dice"]["mean"] == pytest.approx(0.7) and fold0["dice"]["std"] == pytest.approx(0.1)
    overall = summary["overall"]["label_1"]
    assert overall["dice"]["mean"] == pytest.approx(0.6)
    assert overall["hd95"]["n_infinite"] == 1 and overall["hd95"]["mean"] == pytest.approx(2.0)
    assert summary["fold_mean"]["label_1"]["dice"]["mean"] == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    md = (tmp_path / "report.md").read_text()
    assert "| 0 | 0.7000 ± 0.1000" in md and "e: no mask" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2
    assert "http://" not in page and "https://" not in page
    assert json.loads((tmp_path / "summary.json").read_text())["n_cases"] == 5


def test_3d_overlay_slice_is_shown_the_radiological_way():
    import numpy as np

    from medseg.report.overlays import display_slice

    # canonical RAS+ volume: x grows towards the patient's right, y towards anterior, z upwards
    vol = np.zeros((1, 5, 4, 3))
    ref = np.zeros((5, 4, 3), bool)
    ref[:, :, 1] = True
    vol[0, 4, 3, 1] = 7  # x = 4 (the patient's far right), y = 3 (most anterior)
    img, r, _ = display_slice(vol, ref, ref)
    assert img.shape == (4, 5)
    assert img[0, 0] == 7  # anterior at the top, the patient's right on the left of the picture


def test_report_shows_the_ten_worst_cases_and_names_the_definitions(tmp_path: Path) -> None:
    import numpy as np

    from medseg.io.raster import write_png

    rows = {0: [], 1: []}
    for i in range(12):
        fold, dice = i % 2, i / 20
        rows[fold].append(_row(f"c{i:02d}", dice, 1.0))
        write_png(
            tmp_path / f"fold_{fold}" / "overlays" / f"c{i:02d}_dice{dice:.3f}.png",
            np.zeros((4, 4), np.uint8),
        )
    for fold, fold_rows in rows.items():
        write_metrics_csv(tmp_path / f"fold_{fold}" / "metrics.csv", fold_rows)
    write_report(tmp_path, "t")
    page = (tmp_path / "report.html").read_text()
    captions = [c.split("</figcaption>")[0] for c in page.split("<figcaption>")[1:]]
    assert len(captions) == 10
    assert captions[0].startswith("fold_0 c00 Dice 0.000") and "c10" not in page and "c11" not in page
    assert "HD95 capped" in page and "MedPy" in page and "image diagonal" in page
