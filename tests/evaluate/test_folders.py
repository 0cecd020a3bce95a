"""`medseg evaluate`: folder against folder, pairing, value normalisation, spacing, DICOM SEG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import DataError
from medseg.evaluate.casewise import read_metrics_csv
from medseg.evaluate.classes import resolve
from medseg.evaluate.folders import evaluate_folders
from medseg.io.nifti import write_nifti
from medseg.io.raster import write_png


def _square(top: int = 8, left: int = 8, size: int = 12) -> np.ndarray:
    m = np.zeros((32, 32), np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


def test_png_folders_give_known_dice_and_normalise_0_255(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    write_png(ref / "a_segmentation.png", _square() * 255)
    write_png(pred / "a.png", _square())  # 0/1 against 0/255: identical masks
    write_png(ref / "b_segmentation.png", _square() * 255)
    half = _square()
    half[:, 14:] = 0  # 6 of 12 columns: Dice 2*72/(72+144)
    write_png(pred / "b.png", half)
    summary = evaluate_folders(pred, ref, tmp_path / "out", ref_suffix="_segmentation")
    rows = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("case,label,class,dice,iou,jaccard_thresholded,hd95,hd,assd,nsd")
    by_case = {r.split(",")[0]: float(r.split(",")[3]) for r in rows[1:]}
    assert by_case == {"a": 1.0, "b": pytest.approx(2 * 72 / 216, abs=1e-6)}
    assert summary["labels"]["label_1"]["dice"]["mean"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_cases"] == 2


def test_references_without_prediction_are_counted_and_extra_predictions_listed(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    write_png(ref / "a.png", _square())
    write_png(ref / "b.png", _square())
    write_png(ref / "c.png", _square())
    write_png(pred / "a.png", _square())
    summary = evaluate_folders(pred, ref, tmp_path / "out")  # the case in common is scored
    assert summary["n_cases"] == 1 and summary["labels"]["label_1"]["dice"]["mean"] == 1.0
    assert summary["n_references_without_prediction"] == 2
    assert summary["references_without_prediction"] == ["b", "c"]
    with pytest.raises(DataError, match=r"no prediction for 2 reference\(s\): \['b', 'c'\]"):
        evaluate_folders(pred, ref, tmp_path / "out", require_all=True)
    write_png(pred / "d.png", _square())
    with pytest.raises(DataError, match=r"1 prediction\(s\) without a reference: \['d'\]"):
        evaluate_folders(pred, ref, tmp_path / "out")
    write_png(tmp_path / "other" / "x.png", _square())
    with pytest.raises(DataError, match="no case in common"):
        evaluate_folders(tmp_path / "other", ref, tmp_path / "out")


def test_empty_and_infinite_cases_are_counted_and_capped(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    write_png(ref / "a.png", _square())
    write_png(pred / "a.png", _square())
    write_png(ref / "b.png", _square())
    write_png(pred / "b.png", np.zeros((32, 32), np.uint8))  # missed entirely
    s = evaluate_folders(pred, ref, tmp_path / "out", spacing=[0.5, 0.5])["labels"]["label_1"]
    assert s["counts"] == {"n": 2, "ref_empty": 0, "pred_empty": 1}
    assert s["hd95"]["n_infinite"] == 1 and s["hd95"]["mean"] == 0.0
    assert s["hd95"]["capped_mean"] == pytest.approx(np.hypot(16, 16) / 2)  # the diagonal, in mm


def test_a_class_only_predicted_scores_as_a_false_positive(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    two = _square() + 2 * _square(24, 24, 6)
    write_png(ref / "a.png", two)
    write_png(pred / "a.png", two)
    s = evaluate_folders(pred, ref, tmp_path / "out")
    assert set(s["labels"]) == {"label_1", "label_2", "mean"}
    blob = (two + 5 * _square(0, 0, 4)).astype(np.uint8)  # 16 pixels of a class no reference has
    write_png(pred / "a.png", blob)
    s = evaluate_folders(pred, ref, tmp_path / "out")
    assert s["labels"]["label_5"]["dice"]["mean"] == 0.0
    assert s["labels"]["label_5"]["counts"] == {"n": 1, "ref_empty": 1, "pred_empty": 0}
    assert s["labels"]["label_1"]["dice"]["mean"] == 1.0  # the other classes are untouched
    rows = {r["class"]: r for r in read_metrics_csv(tmp_path / "out" / "metrics.csv")}
    assert rows["label_5"]["pred_volume"] == 16.0 and rows["label_5"]["ref_volume"] == 0.0
    named = resolve(None, "a=1,b=2", None)  # a subset of the values: the others are not scored
    assert list(evaluate_folders(pred, ref, tmp_path / "out", classes=named)["labels"]) == ["a", "b", "mean"]
    with pytest.raises(DataError, match=r"values \[5\] are not among the model's class values \[1, 2\]"):
        evaluate_folders(pred, ref, tmp_path / "out", classes=named, model_values={1, 2})


def test_nifti_spacing_from_the_header_and_grid_check(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    r = np.zeros((20, 20, 10), np.uint8)
    r[5:15, 5:15, 2:8] = 1
    p = np.roll(r, 2, axis=2)  # two slices up: 4 mm
    write_nifti(ref / "x.nii.gz", r, affine)
    write_nifti(pred / "x.nii.gz", p, affine)
    s = evaluate_folders(pred, ref, tmp_path / "out")["labels"]["label_1"]
    assert s["hd"]["mean"] == pytest.approx(4.0)
    write_nifti(pred / "x.nii.gz", p, np.diag([0.8, 0.8, 2.5, 1.0]))
    with pytest.raises(DataError, match="x: prediction and reference affines differ"):
        evaluate_folders(pred, ref, tmp_path / "out")


def test_dicom_seg_prediction_against_nifti_reference(tmp_path):
    from medseg.data.synthetic_ct import affine_for, make_case, write_ct_series
    from medseg.io.dicom_seg import Segments, write_seg
    from medseg.io.readers import read_volume

    shape = (24, 20, 8)
    hu, label = make_case(shape, np.random.default_rng(1))
    affine = affine_for(shape, lps=True)  # the NIfTI reference is stored in LPS order
    write_ct_series(hu, affine_for(shape, False), tmp_path / "series", "1.2.826.0.1.3680043.8.498.9")
    write_nifti(tmp_path / "ref" / "c1.nii.gz", label[::-1, ::-1], affine)
    canon, canon_affine, _ = read_volume(tmp_path / "ref" / "c1.nii.gz")
    write_seg(
        canon,
        canon_affine,
        tmp_path / "series",
        tmp_path / "pred" / "c1.dcm",
        Segments({5: "liver", 1: "spleen"}),
    )
    renumbered = np.select([label == 1, label == 5], [1, 2], 0).astype(np.uint8)  # segments by value
    write_nifti(tmp_path / "ref" / "c1.nii.gz", renumbered[::-1, ::-1], affine)  # SEG segment numbers
    s = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out")["labels"]
    assert s["label_1"]["dice"]["mean"] == 1.0 and s["label_2"]["dice"]["mean"] == 1.0


def test_cli_evaluate_writes_files_and_prints_the_summary(tmp_path):
    write_png(tmp_path / "ref" / "a.png", _square() * 255)
    write_png(tmp_path / "pred" / "a.png", _square(9, 8) * 255)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred"),
            "--ref",
            str(tmp_path / "ref"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "label_1: Dice 0.9167" in result.output
    bad = CliRunner().invoke(
        app, ["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(tmp_path / "ref")]
    )
    assert bad.exit_code == 1 and "--pred: folder" in bad.output
