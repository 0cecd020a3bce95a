"""Hostile input, output names: a crafted UID or file name never writes outside ``--output``, and
pictures keep their own names so ``medseg evaluate`` pairs predictions with references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from medseg.errors import DataError
from medseg.evaluate.folders import evaluate_folders
from medseg.infer.batch import predict_folder
from medseg.io.names import inside, safe_name
from medseg.io.raster import read_raster, write_png
from medseg.tracking.models import load_bundle

from ..infer.conftest import CPU, manifest, untrained_run_dir
from ..infer.test_predict_2d import TINY_2D

CRAFTED = ["../../escaped", "/tmp/medseg-absolute-escape", "..", "a/../../b", "x" * 300]


def mammogram(path: Path, sop_uid: str, series_uid: str) -> Path:
    """A small grey digital mammogram whose UIDs are whatever the caller says."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3.4", series_uid, "MG"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 96, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.1, 0.1]
    pixels = np.zeros((96, 64), np.uint16)
    pixels[20:70, :40] = 3000
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("text", CRAFTED)
def test_safe_names_stay_in_their_folder(text, tmp_path):
    name = safe_name(text)
    assert "/" not in name and not name.startswith(".") and 0 < len(name) <= 120
    assert inside(tmp_path, name).parent == tmp_path


def test_inside_refuses_a_name_that_leaves_the_folder(tmp_path):
    for name in ("../x", "a/b", "/etc/passwd", ".."):
        with pytest.raises(DataError, match="would leave the output folder"):
            inside(tmp_path, name)


def test_crafted_sop_uids_write_only_inside_the_output_folder(tmp_path):
    run_dir = untrained_run_dir(
        "mammo.yaml",
        [*TINY_2D, "transforms.spatial_size=[64, 48]", "transforms.preprocess=[]", "predict.write_seg=false"],
        tmp_path / "run",
        folds=1,
    )
    inputs, out = tmp_path / "deep" / "in", tmp_path / "deep" / "out"
    for i, uid in enumerate(CRAFTED):
        mammogram(inputs / f"{i}.dcm", uid, "1.2.3.4.5")
    before = {p for p in tmp_path.rglob("*") if "out" not in p.parts}
    summary = predict_folder(load_bundle(str(run_dir)), inputs, out, CPU)
    assert summary["done"] == len(CRAFTED) and summary["failed"] == 0
    after = {p for p in tmp_path.rglob("*") if "out" not in p.parts}
    assert after == before  # nothing written beside the output folder
    assert not Path("/tmp/medseg-absolute-escape.nii.gz").exists()
    rows = manifest(out)
    assert len({r["mask"] for r in rows}) == len(CRAFTED)  # ".." and "a/../../b" do not collide
    for row in rows:
        assert (out / row["mask"]).resolve().parent == out.resolve() and (out / row["overlay"]).is_file()
        assert row["key"] == safe_name(row["sop_uid"]) or row["key"].startswith(safe_name(row["sop_uid"]))


def test_pictures_keep_their_names_and_pair_with_references(synthetic_root, tmp_path):
    """``sub dir/ISIC_x.jpg`` -> ``sub_dir__ISIC_x.png``; top-level pictures keep their stem, so
    ``medseg evaluate --ref-suffix _segmentation`` pairs the outputs with the reference masks."""
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    images = sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:3]
    masks = synthetic_root / "ISIC2018_Task1_Training_GroundTruth"
    inputs, refs = tmp_path / "in", tmp_path / "refs"
    inputs.mkdir()
    refs.mkdir()
    for f in images[:2]:
        (inputs / f.name).write_bytes(f.read_bytes())
        ref = next(masks.glob(f"{f.stem}_segmentation.*"))
        write_png(refs / f"{f.stem}_segmentation.png", read_raster(ref))
    (inputs / "sub dir").mkdir()
    (inputs / "sub dir" / images[2].name).write_bytes(images[2].read_bytes())
    out = tmp_path / "out"
    summary = predict_folder(load_bundle(str(run_dir)), inputs, out, CPU)
    assert summary["done"] == 3
    names = {r["source"]: r["mask"] for r in manifest(out)}
    assert names[images[0].name] == f"{images[0].stem}.png"
    assert names[f"sub dir/{images[2].name}"] == f"sub_dir__{images[2].stem}.png"
    (out / names[f"sub dir/{images[2].name}"]).unlink()  # no reference for it
    for extra in out.glob("*_overlay.png"):
        extra.unlink()
    result = evaluate_folders(out, refs, tmp_path / "eval", ref_suffix="_segmentation")
    assert result["n_cases"] == 2, result


def _picture(path: Path, height: int, width: int, seed: int) -> Path:
    """A picture of its own size, so a mask written for another input shows by its shape."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(path)
    return path


COLLIDING = {  # name: (height, width)
    "a-2.png": (40, 48),
    "a.jpg": (44, 52),
    "a.png": (36, 60),
    "x.jpg": (50, 50),
    "x_overlay.jpg": (30, 70),
    "A.PNG": (34, 42),  # `a` again on a case-blind file system
    "s/b.png": (38, 38),
    "s__b.png": (42, 40),
    "y_probabilities.png": (32, 36),
}


def test_output_names_never_collide_and_every_input_keeps_its_own_files(tmp_path):
    """``a.png`` once overwrote ``a-2.png``'s mask and ``x_overlay.jpg``'s mask was ``x.jpg``'s
    overlay: 'done 5' with 4 manifest rows. Each input's mask now has its own picture's shape."""
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    inputs, out = tmp_path / "in", tmp_path / "out"
    for i, (name, (h, w)) in enumerate(COLLIDING.items()):
        _picture(inputs / name, h, w, i)
    bundle = load_bundle(str(run_dir))
    summary = predict_folder(bundle, inputs, out, CPU, workers=0)
    rows = {r["source"]: r for r in manifest(out)}
    assert summary["done"] == len(COLLIDING) == len(rows) and summary["failed"] == 0
    files = [r[k] for r in rows.values() for k in ("mask", "overlay")]
    assert len(set(files)) == len(files) == 2 * len(COLLIDING)
    assert {p.name for p in out.iterdir() if p.suffix == ".png"} == set(files)
    for name, (h, w) in COLLIDING.items():
        assert read_raster(out / rows[name]["mask"]).shape == (h, w), name
    assert rows["x.jpg"]["mask"] == "x.png" and rows["x.jpg"]["overlay"] == "x_overlay.png"
    # names that clash with no other stay as they are (a PNG mask never ends as _probabilities.nii.gz)
    assert rows["a-2.png"]["mask"] == "a-2.png" and rows["y_probabilities.png"]["key"] == "y_probabilities"
    for clashing in ("a.jpg", "a.png", "A.PNG", "x_overlay.jpg", "s/b.png", "s__b.png"):
        assert rows[clashing]["key"] not in ("a", "A", "x_overlay", "s__b")
    # a rerun finds every input done; one input replaced by another of the same key is done again
    (inputs / "a-2.png").unlink()
    _picture(inputs / "a-2.jpg", 46, 46, 99)
    again = predict_folder(bundle, inputs, out, CPU, workers=0)
    assert (again["done"], again["done_earlier"]) == (1, len(COLLIDING) - 1)
    assert read_raster(out / "a-2.png").shape == (46, 46)


def test_keys_are_unique_whatever_the_listing_order_and_checked_over_every_file(tmp_path):
    from medseg.config.models import PredictConfig
    from medseg.infer.discover import InputItem, _unique_keys, discover, output_names

    for name in COLLIDING:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not read by discover")
    items = discover(tmp_path, 2, PredictConfig())
    names = [n.casefold() for i in items for n in output_names(i.key, i.kind)]
    assert len(names) == len(set(names)) == 5 * len(COLLIDING)
    keys = {i.source: i.key for i in items}
    again = [InputItem(k, "raster", [], source) for source, k in reversed(_plain_keys(tmp_path).items())]
    _unique_keys(again)
    assert {i.source: i.key for i in again} == keys  # a key does not depend on the listing's order


def _plain_keys(root: Path) -> dict[str, str]:
    from medseg.infer.discover import path_key

    relative = [p.relative_to(root).as_posix() for p in root.rglob("*.*")]
    return {r: path_key(r) for r in relative}


@pytest.mark.parametrize("name", ["病" * 80 + ".png", "é" * 120 + ".jpg", "x" * 250 + ".png"])
def test_input_names_of_many_bytes_give_outputs_that_fit_a_file_name(name, tmp_path):
    """255 bytes a name: 80 CJK characters are 240 bytes, and ``_probabilities.nii.gz`` adds 21."""
    run_dir = untrained_run_dir(
        "demo.yaml",
        [*TINY_2D, "transforms.spatial_size=[32, 32]", "predict.write_probabilities=true"],
        tmp_path / "run",
        folds=1,
    )
    inputs, out = tmp_path / "in", tmp_path / "out"
    _picture(inputs / name, 30, 40, 0)
    _picture(inputs / "sub" / name, 30, 40, 1)
    summary = predict_folder(load_bundle(str(run_dir)), inputs, out, CPU, workers=0)
    assert summary["done"] == 2 and summary["failed"] == 0, manifest(out)
    written = [p.name for p in out.iterdir() if p.is_file()]
    assert len(written) == 2 * 3 + 2  # mask, overlay, probabilities each; manifest.csv, summary.json
    assert max(len(n.encode()) for n in written) <= 255 - 16


def test_case_ids_of_many_bytes_name_files_that_fit(tmp_path):
    from medseg.io.names import MAX_STEM_BYTES, byte_length
    from medseg.run_dir import FoldDir

    fold = FoldDir(tmp_path / "fold_0", 0)
    long_ids = ["肝" * 100, "肝" * 99 + "臓", "x" * 400]
    paths = [fold.prediction(i, 2) for i in long_ids] + [fold.overlay(i) for i in long_ids]
    assert len({p.name for p in paths}) == len(paths) // 2  # prediction and overlay share a stem
    for path in paths:
        assert byte_length(path.stem.removesuffix(".nii")) <= MAX_STEM_BYTES
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"fits")  # OSError "File name too long" otherwise
    assert fold.prediction("IMD002", 2).name == "IMD002.png"  # ids that fit are kept as they are
