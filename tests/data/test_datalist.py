from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.errors import DataError
from tests.conftest import make_dataset

MASKS = "ISIC2018_Task1_Training_GroundTruth"
IMAGES = "ISIC2018_Task1-2_Training_Input"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "d", n_cases=8, height=32, width=40)


def test_pairs_and_metadata(root: Path) -> None:
    cases, bad = build_datalist(DataConfig(root=root))
    assert len(cases) == 8 and bad == []
    first = cases[0]
    assert first.id == "SYN0000"
    assert str(first.images[0].path).endswith("SYN0000.jpg")
    assert first.label is not None and str(first.label.path).endswith("SYN0000_segmentation.png")
    assert first.shape == (32, 40) and first.images[0].kind == first.label.kind == "raster"
    assert first.patient.startswith("P") and first.diagnosis


def _break(root: Path) -> None:
    # JPEG-saved mask: values between 0 and 255
    m = np.zeros((32, 40), np.uint8)
    m[8:24, 10:30] = 255
    Image.fromarray(m).save(root / MASKS / "SYN0001_segmentation.png.jpg", quality=50)
    shutil.move(root / MASKS / "SYN0001_segmentation.png.jpg", root / MASKS / "SYN0001_segmentation.png")
    # mask of another size
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / MASKS / "SYN0002_segmentation.png")
    # 3-channel mask
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(root / MASKS / "SYN0003_segmentation.png")
    # corrupt (truncated) image
    data = (root / IMAGES / "SYN0004.jpg").read_bytes()
    (root / IMAGES / "SYN0004.jpg").write_bytes(data[: len(data) // 3])
    # image without mask
    (root / MASKS / "SYN0005_segmentation.png").unlink()


def test_bad_cases_stop_with_every_reason(root: Path) -> None:
    _break(root)
    with pytest.raises(DataError) as info:
        build_datalist(DataConfig(root=root))
    text = str(info.value)
    assert "5 bad case(s)" in text
    assert "SYN0001: mask values" in text and "data.binarize_threshold" in text
    assert "SYN0002: image is 32x40 but mask is 20x20" in text
    assert "SYN0003: mask has 3 channels" in text
    assert "SYN0004:" in text and "not a readable image" in text
    assert "SYN0005: no mask" in text
    assert "data.on_bad_case: skip" in text


def test_skip_records_bad_cases_and_keeps_the_rest(root: Path) -> None:
    _break(root)
    cases, bad = build_datalist(DataConfig(root=root, on_bad_case="skip"))
    assert [c.id for c in cases] == ["SYN0000", "SYN0006", "SYN0007"]
    assert sorted(b["id"] for b in bad) == ["SYN0001", "SYN0002", "SYN0003", "SYN0004", "SYN0005"]


def test_binarize_threshold_accepts_jpeg_masks(root: Path) -> None:
    m = np.zeros((32, 40), np.uint8)
    m[8:24, 10:30] = 255
    Image.fromarray(m).save(root / MASKS / "tmp.jpg", quality=50)
    shutil.move(root / MASKS / "tmp.jpg", root / MASKS / "SYN0001_segmentation.png")
    cases, bad = build_datalist(DataConfig(root=root, binarize_threshold=127))
    assert len(cases) == 8 and not bad


def test_zero_one_masks_and_ignore_value_are_accepted(root: Path) -> None:
    m = np.zeros((32, 40), np.uint8)
    m[5:10, 5:10] = 1
    m[0:2, :] = 7
    Image.fromarray(m).save(root / MASKS / "SYN0001_segmentation.png")
    with pytest.raises(DataError, match=r"SYN0001: label values \[0, 1, 7\] do not fit .*data.ignore_value"):
        build_datalist(DataConfig(root=root))
    cases, _ = build_datalist(DataConfig(root=root, ignore_value=7))
    assert len(cases) == 8


def test_missing_folders_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root: folder .* not found"):
        build_datalist(DataConfig(root=tmp_path / "nope"))
    (tmp_path / "e" / IMAGES).mkdir(parents=True)
    with pytest.raises(DataError, match="data.mask_dir: folder"):
        build_datalist(DataConfig(root=tmp_path / "e"))
    (tmp_path / "e" / MASKS).mkdir()
    with pytest.raises(DataError, match="no images with extensions"):
        build_datalist(DataConfig(root=tmp_path / "e"))


def test_rgba_image_is_read_as_rgb_and_cmyk_or_grey_refused_with_channel_counts(root: Path) -> None:
    Image.fromarray(np.zeros((32, 40, 4), np.uint8)).save(root / IMAGES / "SYN0006.png")
    (root / IMAGES / "SYN0006.jpg").unlink()
    good, _ = build_datalist(DataConfig(root=root))
    assert "SYN0006" in {c.id for c in good}
    Image.new("CMYK", (40, 32)).save(root / IMAGES / "SYN0007.jpg")
    Image.new("L", (40, 32)).save(root / IMAGES / "SYN0008.jpg")
    for cid in ("SYN0007", "SYN0008"):
        (root / MASKS / f"{cid}_segmentation.png").write_bytes(
            (root / MASKS / "SYN0006_segmentation.png").read_bytes()
        )
    with pytest.raises(DataError) as err:
        build_datalist(DataConfig(root=root))
    assert "SYN0007: " in str(err.value) and "a CMYK picture (4 channel(s)); the model takes 3" in str(
        err.value
    )
    assert "SYN0008: " in str(err.value) and "a L picture (1 channel(s)); the model takes 3" in str(err.value)
