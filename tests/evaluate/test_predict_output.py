"""`medseg evaluate` on what `medseg predict` wrote: its side files left out, references beyond the
predicted cases counted, the model's class names and label map, volumes, and per-class statistics
and class subsets of predict itself. Expected values come from numpy on the files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config.models import DataConfig, SyntheticConfig
from medseg.data.synthetic_ct import generate_ct_dataset
from medseg.io.geometry import to_canonical

from ..infer.conftest import manifest, untrained_run_dir

TINY = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
STUDY = [
    *TINY,
    "data.cases=null",
    "data.num_classes=3",
    "data.labels={liver: 5, spleen: 1}",
    "evaluate.nsd_tolerance=[2.0, 3.0]",
    "transforms.preprocess=[]",
    "transforms.spacing=[3.0, 3.0, 3.0]",
    "transforms.patch_size=[16, 16, 8]",
]
OUTPUTS = [
    "--set",
    "predict.write_rtstruct=true",
    "--set",
    "predict.write_probabilities=true",
    "--set",
    "predict.statistics=true",
]


def invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three synthetic CT inputs (a DICOM series and two NIfTI, one stored in LPS order) predicted
    with every output on, and a reference folder with one case more than was predicted."""
    tmp = tmp_path_factory.mktemp("predicted")
    data = generate_ct_dataset(
        DataConfig(root=tmp / "data"), SyntheticConfig(kind="ct", n_cases=4, height=32, width=36, depth=12)
    )
    run = untrained_run_dir("ct.yaml", [f"data.root={data}", *STUDY], tmp / "run", folds=1)
    inputs, refs, out = tmp / "in", tmp / "ref", tmp / "out"
    shutil.copytree(data / "dicom" / "ct_000", inputs / "series")
    for case in ("ct_001", "ct_002"):
        shutil.copy(data / "imagesTr" / f"{case}.nii.gz", inputs / f"{case}.nii.gz")
    invoke("predict", "--model", run, "--input", inputs, "--output", out, "--workers", "0", *OUTPUTS)
    refs.mkdir()
    for case in ("ct_001", "ct_002", "ct_003"):  # ct_003 was not predicted
        shutil.copy(data / "labelsTr" / f"{case}.nii.gz", refs / f"{case}.nii.gz")
    (series,) = [r for r in manifest(out) if r["kind"] == "dicom_series"]
    shutil.copy(data / "labelsTr" / "ct_000.nii.gz", refs / f"{series['key']}.nii.gz")
    return {"data": data, "run": run, "inputs": inputs, "out": out, "ref": refs}


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return to_canonical(np.asarray(img.dataobj), img.affine)


def expected_rows(pred_dir: Path, ref_dir: Path, classes: dict[str, tuple[int, tuple[int, ...]]]) -> dict:
    """(case, class) -> Dice and volumes, by numpy on the files (NIfTI, canonical order)."""
    rows = {}
    for ref_path in sorted(ref_dir.glob("*.nii.gz")):
        case = ref_path.name.removesuffix(".nii.gz")
        if not (pred_dir / ref_path.name).is_file():
            continue
        pred, _ = canonical(pred_dir / ref_path.name)
        ref, affine = canonical(ref_path)
        voxel = float(abs(np.linalg.det(affine[:3, :3])))
        for name, (value, ref_values) in classes.items():
            p, r = pred == value, np.isin(ref, ref_values)
            dice = 2 * (p & r).sum() / (p.sum() + r.sum()) if p.sum() + r.sum() else 1.0
            rows[case, name] = (dice, r.sum() * voxel, p.sum() * voxel)
    return rows


def scored_rows(out: Path) -> dict:
    with open(out / "metrics.csv", newline="") as fh:
        return {
            (r["case"], r["class"]): (float(r["dice"]), float(r["ref_volume"]), float(r["pred_volume"]))
            for r in csv.DictReader(fh)
        }


def test_the_output_folder_holds_every_side_file(predicted):
    names = {p.name for p in predicted["out"].iterdir()}
    for ending in ("_seg.dcm", "_rtstruct.dcm", "_probabilities.nii.gz", "_statistics.json"):
        assert any(n.endswith(ending) for n in names), ending
    assert {"manifest.csv", "summary.json"} <= names


def test_evaluate_with_the_model_gives_named_complete_results(predicted, tmp_path):
    out = predicted["out"]
    printed = invoke(
        "evaluate",
        "--pred",
        out,
        "--ref",
        predicted["ref"],
        "--model",
        predicted["run"],
        "--out",
        tmp_path / "ev",
    )
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["n_cases"] == 3 and summary["references_without_prediction"] == ["ct_003"]
    assert list(summary["labels"]) == ["liver", "spleen", "mean"]
    assert summary["classes"] == {
        "liver": {"pred_value": 1, "ref_values": [5]},
        "spleen": {"pred_value": 2, "ref_values": [1]},
    }
    assert summary["settings"]["nsd_tolerance"] == {"liver": 2.0, "spleen": 3.0}  # the model's own
    assert "1 reference(s) without a prediction, not scored: ct_003" in printed
    expected = expected_rows(out, predicted["ref"], {"liver": (1, (5,)), "spleen": (2, (1,))})
    got = scored_rows(tmp_path / "ev")
    assert set(got) == set(expected) and len(got) == 6
    for key, (dice, ref_volume, pred_volume) in expected.items():
        assert got[key][0] == pytest.approx(dice, abs=1e-6), key
        assert got[key][1:] == pytest.approx((ref_volume, pred_volume), abs=1e-4), key
    assert all(v[1] > 0 for v in got.values())  # every reference holds both organs: volumes filled

    # the same classes given by hand, and the folder without its manifest (side files by name)
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    (bare / "manifest.csv").unlink()
    by_hand = ["--classes", "liver=1,spleen=2", "--ref-labels", "liver=5,spleen=1"]
    invoke("evaluate", "--pred", bare, "--ref", predicted["ref"], *by_hand, "--out", tmp_path / "ev2")
    assert scored_rows(tmp_path / "ev2") == got


def test_require_all_refuses_the_reference_without_a_prediction(predicted, tmp_path):
    result = CliRunner().invoke(
        app,
        ["evaluate", "--pred", str(predicted["out"]), "--ref", str(predicted["ref"])]
        + ["--model", str(predicted["run"]), "--require-all", "--out", str(tmp_path / "ev")],
    )
    assert result.exit_code == 1
    assert "no prediction for 1 reference(s): ['ct_003']" in result.output


def test_a_predicted_class_the_references_lack_scores_as_a_false_positive(predicted, tmp_path):
    refs = tmp_path / "ref"
    refs.mkdir()
    for path in predicted["ref"].glob("*.nii.gz"):  # the spleen (1) left out of every reference
        img = nib.load(path)
        label = np.asarray(img.dataobj)
        nib.save(
            nib.Nifti1Image(np.where(label == 1, 0, label).astype(np.uint8), img.affine), refs / path.name
        )
    invoke(
        "evaluate",
        "--pred",
        predicted["out"],
        "--ref",
        refs,
        "--model",
        predicted["run"],
        "--out",
        tmp_path / "e",
    )
    got = scored_rows(tmp_path / "e")
    spleen = {case: v for (case, name), v in got.items() if name == "spleen"}
    assert all(ref_volume == 0 for _, ref_volume, _ in spleen.values())
    for dice, _, pred_volume in spleen.values():
        assert dice == (0.0 if pred_volume > 0 else 1.0)
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["labels"]["spleen"]["counts"]["ref_empty"] == 3


def test_statistics_equal_numpy_on_the_input_and_the_mask_as_stored(predicted):
    out = predicted["out"]
    rows = {r["source"]: r for r in manifest(out) if r["source"]}
    for case in ("ct_001", "ct_002"):  # ct_001 is stored in LPS order: the grids must still agree
        row = rows[f"{case}.nii.gz"]
        stats = json.loads((out / row["statistics"]).read_text())
        image = np.asarray(nib.load(predicted["inputs"] / f"{case}.nii.gz").dataobj).astype(np.float64)
        mask_img = nib.load(out / row["mask"])
        mask = np.asarray(mask_img.dataobj)
        voxel = float(abs(np.linalg.det(mask_img.affine[:3, :3]))) / 1000  # mL
        assert stats["volume_unit"] == "mL" and stats["channels"] == 1
        for name, value in (("liver", 1), ("spleen", 2)):
            inside = image[mask == value]
            entry = stats["classes"][name]
            assert entry["voxels"] == inside.size and entry["volume"] == round(inside.size * voxel, 4)
            if inside.size:
                assert entry["mean"] == pytest.approx(inside.mean(), rel=1e-9)
                assert entry["median"] == pytest.approx(np.median(inside), rel=1e-9)
                assert entry["std"] == pytest.approx(inside.std(), rel=1e-9)
                assert (entry["min"], entry["max"]) == (inside.min(), inside.max())
                assert float(row[f"mean_{name}"]) == pytest.approx(round(inside.mean(), 4))
    (series,) = [r for r in manifest(out) if r["kind"] == "dicom_series"]
    stats = json.loads((out / series["statistics"]).read_text())
    mask = np.asarray(nib.load(out / series["mask"]).dataobj)
    assert stats["intensity_unit"] == "HU" and stats["modality"] == "CT"
    assert [stats["classes"][n]["voxels"] for n in ("liver", "spleen")] == [
        (mask == 1).sum(),
        (mask == 2).sum(),
    ]


def test_predict_writes_only_the_classes_chosen(predicted, tmp_path):
    out = tmp_path / "spleen"
    invoke(
        "predict", "--model", predicted["run"], "--input", predicted["inputs"], "--output", out,
        "--workers", "0", "--classes", "spleen", "--set", "predict.statistics=true",
    )  # fmt: skip
    rows = manifest(out)
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows)
    for row in rows:
        full = np.asarray(nib.load(predicted["out"] / row["mask"]).dataobj)
        mask = np.asarray(nib.load(out / row["mask"]).dataobj)
        np.testing.assert_array_equal(mask, np.where(full == 2, 2, 0))  # the liver became background
        assert "volume_spleen" in row and "volume_liver" not in row
        assert list(json.loads((out / row["statistics"]).read_text())["classes"]) == ["spleen"]
        if row["seg"]:
            import pydicom

            seg = pydicom.dcmread(out / row["seg"])
            assert [s.SegmentLabel for s in seg.SegmentSequence] == ["spleen"]
    bad = CliRunner().invoke(
        app,
        ["predict", "--model", str(predicted["run"]), "--input", str(predicted["inputs"])]
        + ["--output", str(tmp_path / "bad"), "--classes", "kidney"],
    )
    assert bad.exit_code == 1
    assert "predict.classes: ['kidney']: not among the model's classes ['liver', 'spleen']" in bad.output


def test_the_isic_command_of_the_report_scores_pictures_with_their_overlays_beside(synthetic_root, tmp_path):
    """`medseg evaluate --pred OUT --ref GT --ref-suffix _segmentation` on predict's PNG outputs, the
    overlays left in place and one reference more than was predicted: the two masks scored."""
    from medseg.io.raster import read_raster, write_png

    tiny_2d = [*TINY, "transforms.spatial_size=[32, 32]"]
    run = untrained_run_dir("demo.yaml", tiny_2d, tmp_path / "run", folds=1)
    images = sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:3]
    inputs, refs, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    inputs.mkdir()
    refs.mkdir()
    for i, image in enumerate(images):
        if i < 2:
            shutil.copy(image, inputs / image.name)
        masks = synthetic_root / "ISIC2018_Task1_Training_GroundTruth"
        write_png(refs / f"{image.stem}_segmentation.png", read_raster(next(masks.glob(f"{image.stem}_*"))))
    invoke("predict", "--model", run, "--input", inputs, "--output", out, "--workers", "0")
    assert len(list(out.glob("*_overlay.png"))) == 2
    printed = invoke(
        "evaluate", "--pred", out, "--ref", refs, "--ref-suffix", "_segmentation", "--out", tmp_path / "ev"
    )
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["references_without_prediction"] == [images[2].stem]
    assert f"1 reference(s) without a prediction, not scored: {images[2].stem}" in printed
    with open(tmp_path / "ev" / "metrics.csv", newline="") as fh:
        got = {r["case"]: float(r["dice"]) for r in csv.DictReader(fh)}
    assert set(got) == {images[0].stem, images[1].stem}
    for case, dice in got.items():
        p, r = read_raster(out / f"{case}.png") > 0, read_raster(refs / f"{case}_segmentation.png") > 0
        assert dice == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-6), case
