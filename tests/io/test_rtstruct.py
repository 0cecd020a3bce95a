"""RT Structure Sets: every slice's outlines in patient coordinates, drawn back onto the slices they
reference, give the mask again; dciodvfy finds no error."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medseg.data.synthetic_ct import affine_for, write_ct_series
from medseg.io.dicom_seg import Segments
from medseg.io.geometry import to_canonical
from medseg.io.rtstruct import write_rtstruct

from ..conftest import dciodvfy_errors


def test_outlines_drawn_back_give_the_mask(tmp_path):
    from skimage.draw import polygon

    shape = (32, 28, 6)
    affine = affine_for(shape, lps=True)  # stored right-to-left: outlines must still land right
    write_ct_series(np.zeros(shape), affine, tmp_path / "series", "1.2.826.0.1.3680043.8.498.78")
    label = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[0:32, 0:28]
    for k in range(1, 5):
        label[..., k][((yy - 12) / 7.0) ** 2 + ((xx - 10) / 5.0) ** 2 <= 1] = 1
    label[20:26, 18:25, 2:4] = 2
    canon, canon_affine = to_canonical(label, affine)
    files = sorted((tmp_path / "series").iterdir())
    path = write_rtstruct(
        canon, canon_affine, files, tmp_path / "rt.dcm", Segments({1: "liver", 2: "spleen"})
    )
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and [r.ROIName for r in ds.StructureSetROISequence] == [
        "liver",
        "spleen",
    ]
    assert list(ds.ROIContourSequence[0].ROIDisplayColor) == [221, 130, 101]  # the built-in liver colour
    slices = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in files}
    for roi, value in zip(ds.ROIContourSequence, (1, 2), strict=True):
        drawn = np.zeros(shape, bool)
        for contour in roi.ContourSequence:
            image = slices[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            ipp, iop = (
                np.asarray(image.ImagePositionPatient, float),
                np.asarray(image.ImageOrientationPatient, float),
            )
            assert np.allclose((points - ipp) @ np.cross(iop[:3], iop[3:]), 0, atol=1e-3)  # on its slice
            col = (points - ipp) @ iop[:3] / float(image.PixelSpacing[1])
            row = (points - ipp) @ iop[3:] / float(image.PixelSpacing[0])
            inside = np.zeros((image.Rows, image.Columns), bool)
            rr, cc = polygon(row, col, inside.shape)
            inside[rr, cc] = True
            k = int(np.argmin([abs(pydicom.dcmread(f).ImagePositionPatient[2] - ipp[2]) for f in files]))
            drawn[..., k] |= inside.T  # the slice at that position
        truth = label == value
        dice = 2 * (drawn & truth).sum() / (drawn.sum() + truth.sum())
        assert dice > 0.85, dice  # outlines through pixel middles lose about half a pixel all round
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(path) == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_an_empty_class_still_makes_a_valid_structure_set(tmp_path):
    shape = (16, 16, 3)
    affine = affine_for(shape, lps=False)
    write_ct_series(np.zeros(shape), affine, tmp_path / "series", "1.2.826.0.1.3680043.8.498.79")
    canon, canon_affine = to_canonical(np.zeros(shape, np.uint8), affine)
    files = sorted((tmp_path / "series").iterdir())
    path = write_rtstruct(canon, canon_affine, files, tmp_path / "rt.dcm", Segments({1: "liver"}))
    assert dciodvfy_errors(path) == []


def test_predict_writes_one_beside_the_seg_when_asked(tmp_path):
    from medseg.infer.batch import predict_folder
    from medseg.tracking.models import load_bundle

    from ..infer.conftest import CPU, manifest, untrained_run_dir

    stats = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"
    tiny = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
    run_dir = untrained_run_dir("ct.yaml", [stats, *tiny, "predict.write_rtstruct=true"], tmp_path / "run", 1)
    shape = (48, 40, 12)
    write_ct_series(
        np.zeros(shape), affine_for(shape, False), tmp_path / "in" / "s", "1.2.826.0.1.3680043.8.498.80"
    )
    summary = predict_folder(load_bundle(str(run_dir)), tmp_path / "in", tmp_path / "out", CPU, workers=0)
    (row,) = manifest(tmp_path / "out")
    assert summary["done"] == 1 and row["rtstruct"].endswith("_rtstruct.dcm") and row["seg"]
    ds = pydicom.dcmread(tmp_path / "out" / row["rtstruct"])
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["liver", "spleen", "kidneys"]
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(tmp_path / "out" / row["rtstruct"]) == []


def _distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Each point's distance to the closed polygon's edges."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0, 1)
    nearest = a + t[..., None] * ab
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(axis=1)


def test_simplified_outlines_stay_within_the_tolerance_and_cover_the_same_pixels():
    from skimage.draw import polygon

    from medseg.io.rtstruct import contours

    yy, xx = np.mgrid[0:200, 0:200]
    mask = ((yy - 100) / 70.0) ** 2 + ((xx - 90) / 45.0) ** 2 <= 1
    mask |= (yy > 20) & (yy < 35) & (xx > 60) & (xx < 180)  # a bar crossing it
    (full,) = contours(mask)
    (simple,) = contours(mask, 0.25)
    assert len(simple) < len(full) / 3  # staircases become straight segments
    assert _distance_to_polygon(full, simple).max() <= 0.25 + 1e-9  # no point moved further
    drawn = np.zeros(mask.shape, bool)
    rr, cc = polygon(simple[:, 0], simple[:, 1], mask.shape)
    drawn[rr, cc] = True
    np.testing.assert_array_equal(drawn, mask)
    dot = np.zeros((5, 5), bool)
    dot[2, 2] = True  # a one-pixel region keeps its outline
    assert [len(c) for c in contours(dot, 0.25)] == [4]


def test_a_fragmented_label_is_refused_before_anything_is_built(tmp_path):
    """A poor model's noise on every slice: the count, the class most fragmented and the setting to
    change are named, and no file is left."""
    from medseg.errors import DataError

    shape = (64, 64, 8)
    affine = affine_for(shape, lps=False)
    write_ct_series(np.zeros(shape), affine, tmp_path / "series", "1.2.826.0.1.3680043.8.498.81")
    rng = np.random.default_rng(0)
    noisy = (rng.random(shape) < 0.2).astype(np.uint8)  # isolated specks: hundreds per slice
    noisy[10:30, 10:30, :] = 2  # one clean square per slice
    canon, canon_affine = to_canonical(noisy, affine)
    files = sorted((tmp_path / "series").iterdir())
    segments = Segments({1: "liver", 2: "spleen"})
    with pytest.raises(
        DataError,
        match=r"contours \([\d,]+ points; 'liver' alone [\d,]+\) are more than "
        r"predict.rtstruct_max_contours \(1,000\)",
    ):
        write_rtstruct(canon, canon_affine, files, tmp_path / "rt.dcm", segments, max_contours=1000)
    assert not (tmp_path / "rt.dcm").exists() and list(tmp_path.iterdir()) == [tmp_path / "series"]
    clean = np.where(noisy == 2, 2, 0).astype(np.uint8)
    canon, _ = to_canonical(clean, affine)
    path = write_rtstruct(canon, canon_affine, files, tmp_path / "rt.dcm", segments, max_contours=8)
    ds = pydicom.dcmread(path)
    assert len(ds.ROIContourSequence[1].ContourSequence) == 8  # the square on each of the 8 slices
    # 80 points along the pixel edges, 8 once simplified: four sides and four cut corners
    assert all(c.NumberOfContourPoints == 8 for c in ds.ROIContourSequence[1].ContourSequence)


def test_predict_notes_a_refused_structure_set_and_keeps_the_rest(tmp_path):
    """predict.rtstruct_max_contours below what the prediction needs: manifest.csv says why, the mask
    and the SEG are written, the input is done."""
    from medseg.infer.batch import predict_folder
    from medseg.tracking.models import load_bundle

    from ..infer.conftest import CPU, manifest, untrained_run_dir

    tiny = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
    settings = ["predict.write_rtstruct=true", "predict.rtstruct_max_contours=1", "transforms.preprocess=[]"]
    run_dir = untrained_run_dir("ct.yaml", [*tiny, *settings], tmp_path / "run", 1)
    shape = (48, 40, 12)
    hu = np.random.default_rng(1).normal(0, 300, shape)  # texture, so the untrained model's output varies
    write_ct_series(hu, affine_for(shape, False), tmp_path / "in" / "s", "1.2.826.0.1.3680043.8.498.82")
    summary = predict_folder(load_bundle(str(run_dir)), tmp_path / "in", tmp_path / "out", CPU, workers=0)
    (row,) = manifest(tmp_path / "out")
    assert summary["done"] == 1 and row["status"] == "done"
    assert row["rtstruct"] == "" and not list((tmp_path / "out").glob("*_rtstruct.dcm"))
    assert row["reason"].startswith("no RTSTRUCT: not written: ")
    assert "more than predict.rtstruct_max_contours (1)" in row["reason"]
    assert (tmp_path / "out" / row["mask"]).is_file() and (tmp_path / "out" / row["seg"]).is_file()
