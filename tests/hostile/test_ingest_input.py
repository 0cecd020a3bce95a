"""Careless data handed to ingest: ids that differ in letter case or Unicode form, tables saved by
spreadsheets, masks whose values need a threshold, 16-bit and fractional masks."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.errors import DataError
from medseg.io.nifti import write_nifti

from ..conftest import make_dataset, tiny_config

IMAGES = "ISIC2018_Task1-2_Training_Input"
MASKS = "ISIC2018_Task1_Training_GroundTruth"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "d", n_cases=8, height=32, width=40)


def _mask(root: Path, case_id: str, values: np.ndarray) -> None:
    Image.fromarray(values).save(root / MASKS / f"{case_id}_segmentation.png")


def test_ids_that_differ_only_in_letter_case_are_an_error_naming_both(root):
    shutil.copy(root / IMAGES / "SYN0001.jpg", root / IMAGES / "syn0001.JPG")
    with pytest.raises(DataError, match=r"differ only in letter case.*\n  SYN0001.jpg and syn0001.JPG"):
        build_datalist(DataConfig(root=root))


def test_nfc_and_nfd_names_are_one_case_not_two_orphans(root):
    nfd, nfc = unicodedata.normalize("NFD", "Café1"), unicodedata.normalize("NFC", "Café1")
    assert nfd != nfc
    shutil.move(root / IMAGES / "SYN0001.jpg", root / IMAGES / f"{nfd}.jpg")
    shutil.move(root / MASKS / "SYN0001_segmentation.png", root / MASKS / f"{nfc}_segmentation.png")
    cases, bad = build_datalist(DataConfig(root=root, metadata=None))
    assert bad == [] and nfc in {c.id for c in cases} and len(cases) == 8
    nfc_copy = root / IMAGES / f"{nfc}.jpg"
    shutil.copy(root / IMAGES / f"{nfd}.jpg", nfc_copy)  # the same id twice, in two Unicode forms
    with pytest.raises(DataError, match="two images share this id"):
        build_datalist(DataConfig(root=root, metadata=None))


def test_table_ids_are_compared_ignoring_case_and_unicode_form(tmp_path):
    write_nifti(tmp_path / "i.nii.gz", np.zeros((8, 8, 4), np.int16), np.eye(4))
    write_nifti(tmp_path / "l.nii.gz", np.zeros((8, 8, 4), np.uint8), np.eye(4))
    rows = [
        {"id": "Case1", "image": "i.nii.gz", "label": "l.nii.gz"},
        {"id": "case1", "image": "i.nii.gz", "label": "l.nii.gz"},
    ]
    with pytest.raises(DataError, match="ids 'Case1' and 'case1' differ only in letter case"):
        build_datalist(DataConfig(root=tmp_path, layout="table", cases=rows, in_channels=1), 3)


def test_tables_saved_with_a_byte_order_mark_read_their_first_column(root, tmp_path):
    meta = root / "metadata.csv"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    cases, _ = build_datalist(DataConfig(root=root))
    assert all(c.patient.startswith("P") for c in cases)  # image_id found despite the mark
    write_nifti(tmp_path / "i.nii.gz", np.zeros((8, 8, 4), np.int16), np.eye(4))
    write_nifti(tmp_path / "l.nii.gz", np.zeros((8, 8, 4), np.uint8), np.eye(4))
    (tmp_path / "cases.csv").write_bytes(b"\xef\xbb\xbfid,image,label\nA,i.nii.gz,l.nii.gz\n")
    cases, _ = build_datalist(DataConfig(root=tmp_path, layout="table", in_channels=1), 3)
    assert [c.id for c in cases] == ["A"]


def test_non_utf8_tables_are_refused_naming_the_file_and_the_fix(root, tmp_path):
    (root / "metadata.csv").write_bytes("image_id,patient_id\nSYN0000,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"metadata.csv: not UTF-8 text \(byte 0xe9 at offset 31\).*CSV UTF-8"
    ):
        build_datalist(DataConfig(root=root))
    (tmp_path / "cases.csv").write_bytes("id,image,label\nJos\xe9,a,b\n".encode("cp1252"))
    with pytest.raises(DataError, match="cases.csv: not UTF-8 text"):
        build_datalist(DataConfig(root=tmp_path, layout="table", in_channels=1), 3)


def test_class_index_masks_get_advice_that_fits_them(root):
    m = np.zeros((32, 40), np.uint8)
    m[4:10, 4:10], m[12:20, 12:20] = 1, 2
    _mask(root, "SYN0001", m)
    with pytest.raises(DataError) as err:
        build_datalist(DataConfig(root=root))
    assert "label values [0, 1, 2] look like class indices" in str(err.value)
    assert "data.num_classes: 3" in str(err.value) and "127" not in str(err.value)


def test_grey_masks_get_a_threshold_between_their_own_values(root):
    m = np.full((32, 40), 10, np.uint8)
    m[4:10, 4:10], m[12:20, 12:20] = 100, 200
    _mask(root, "SYN0001", m)
    with pytest.raises(DataError, match=r"data.binarize_threshold: 105 \(halfway between 10 and 200\)"):
        build_datalist(DataConfig(root=root))


def test_a_threshold_that_empties_masks_is_refused(root):
    """0/1 masks with the old advice (127): every non-empty mask would become background."""
    for mask in (root / MASKS).iterdir():
        _mask(
            root,
            mask.name.removesuffix("_segmentation.png"),
            (np.asarray(Image.open(mask)) > 0).astype(np.uint8),
        )
    with pytest.raises(DataError) as err:
        build_datalist(DataConfig(root=root, binarize_threshold=127))
    assert "8 bad case(s)" in str(err.value)
    assert (
        "data.binarize_threshold 127 leaves this mask empty (its values are [0, 1]); use a threshold below 1"
        in str(err.value)
    )
    cases, bad = build_datalist(DataConfig(root=root, binarize_threshold=0.5))
    assert len(cases) == 8 and bad == []


def test_fractional_label_values_are_refused(tmp_path):
    label = np.zeros((8, 8, 4), np.float32)
    label[2:4, 2:4, 1] = 0.5
    write_nifti(tmp_path / "i.nii.gz", np.zeros((8, 8, 4), np.int16), np.eye(4))
    write_nifti(tmp_path / "l.nii.gz", label, np.eye(4))
    rows = [{"id": "A", "image": "i.nii.gz", "label": "l.nii.gz"}]
    with pytest.raises(DataError, match=r"A: label has non-integer values \(for example \[0.5\]\)"):
        build_datalist(DataConfig(root=tmp_path, layout="table", cases=rows, in_channels=1), 3)


def test_16_bit_and_1_bit_masks_work_through_held_out_evaluation(tmp_path):
    """Ingest accepts them, so training, held-out prediction and scoring must take them too."""
    from medseg.pipeline import run

    root = make_dataset(tmp_path / "d", n_cases=12, height=32, width=40)
    for i, mask in enumerate(sorted((root / MASKS).iterdir())):
        fg = np.asarray(Image.open(mask)) > 0
        (Image.fromarray(fg.astype(np.uint16)) if i % 2 else Image.fromarray(fg).convert("1")).save(mask)
    assert Image.open(mask).mode in ("I;16", "1")
    out = run(tiny_config(root, tmp_path / "run", tracking={"enabled": False}))
    scores = (out / "fold_0" / "metrics.csv").read_text().splitlines()
    assert len(scores) > 1 and all("nan" not in line for line in scores)


def test_evaluate_pairs_names_across_unicode_form_and_letter_case(tmp_path):
    from medseg.evaluate.folders import evaluate_folders

    m = np.zeros((16, 16), np.uint8)
    m[4:12, 4:12] = 255
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    Image.fromarray(m).save(tmp_path / "pred" / unicodedata.normalize("NFD", "CAFÉ1.png"))
    Image.fromarray(m).save(tmp_path / "ref" / unicodedata.normalize("NFC", "Café1_segmentation.png"))
    summary = evaluate_folders(
        tmp_path / "pred", tmp_path / "ref", tmp_path / "out", ref_suffix="_segmentation"
    )
    assert summary["n_cases"] == 1 and summary["labels"]["label_1"]["dice"]["mean"] == 1.0
    Image.fromarray(m).save(tmp_path / "ref" / "CAFÉ1_segmentation.png")
    with pytest.raises(DataError, match="--ref: two files for case"):
        evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out2", ref_suffix="_segmentation")


def test_a_decompression_bomb_is_a_bad_case_named_with_the_limit(root):
    from .pictures import png_bomb

    (root / IMAGES / "SYN0001.jpg").unlink()
    png_bomb(root / IMAGES / "SYN0001.png", side=12000)
    with pytest.raises(
        DataError, match=r"SYN0001: .*SYN0001.png: 12000x12000 pixels is over the limit of 89,478,485"
    ):
        build_datalist(DataConfig(root=root))
    raised = DataConfig(root=root, max_image_pixels=200_000_000, on_bad_case="skip")
    try:  # read now (a 1-bit picture, so refused for its channels instead)
        _, bad = build_datalist(raised)
    finally:
        build_datalist(DataConfig(root=root, on_bad_case="skip"))  # the default limit again
    assert [b["id"] for b in bad] == ["SYN0001"] and "a 1 picture (1 channel(s))" in bad[0]["reason"]


@pytest.mark.parametrize("bad_id", ["../../escaped", "a/b", "a\\b", ".hidden", "tab\there"])
def test_table_ids_that_cannot_name_a_file_are_refused(tmp_path, bad_id):
    """Ids name held-out predictions and overlays: `../../x` would write outside the run folder."""
    write_nifti(tmp_path / "i.nii.gz", np.zeros((8, 8, 4), np.int16), np.eye(4))
    write_nifti(tmp_path / "l.nii.gz", np.zeros((8, 8, 4), np.uint8), np.eye(4))
    rows = [{"id": bad_id, "image": "i.nii.gz", "label": "l.nii.gz"}]
    with pytest.raises(DataError, match="data.cases: row 1: id .* cannot name a file"):
        build_datalist(DataConfig(root=tmp_path, layout="table", cases=rows, in_channels=1), 3)
