"""Pictures as careless or hostile users hand them in: EXIF orientation, decompression bombs, the
wrong number of channels. Each is read the same way at ingest, in training, in predict and in
evaluate, because every one goes through medseg.io.raster."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medseg.errors import DataError
from medseg.io.raster import DEFAULT_PIXEL_LIMIT, read_raster, set_pixel_limit
from medseg.io.readers import read_mask
from medseg.transforms.loader import load_image

from ..conftest import ROOT
from .pictures import exif_rotated_jpeg, png_bomb


def _stored(height: int = 30, width: int = 50) -> np.ndarray:
    a = np.zeros((height, width, 3), np.uint8)
    a[:10, :20] = 255  # a bright block in the stored top-left corner
    return a


def test_exif_orientation_is_applied_for_images_masks_and_the_training_loader(tmp_path):
    path = exif_rotated_jpeg(tmp_path / "photo.jpg", _stored())
    shown = read_raster(path)
    assert shown.shape == (50, 30, 3)  # displayed turned 90 degrees clockwise
    assert shown[:20, -10:].mean() > 200 and shown[-20:, :10].mean() < 50  # top-left went top-right
    grey = exif_rotated_jpeg(tmp_path / "mask.jpg", _stored()[..., 0])
    assert read_mask(grey).array.shape == (50, 30)
    loaded = load_image(str(path), spatial_dims=2, channels=3)
    assert tuple(loaded.shape) == (3, 50, 30)
    np.testing.assert_allclose(loaded.numpy()[0], shown[..., 0] / 255.0, atol=1e-6)


def test_a_square_rotated_picture_pairs_with_a_mask_drawn_on_what_was_shown(tmp_path):
    """Square pictures are where nothing else notices: the mask must land on the displayed picture."""
    from medseg.config.models import DataConfig
    from medseg.data.datalist import build_datalist

    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    (root / "msk").mkdir()
    stored = np.zeros((40, 40, 3), np.uint8)
    stored[:10, :20] = 255
    exif_rotated_jpeg(root / "img" / "A1.jpg", stored)
    drawn = (read_raster(root / "img" / "A1.jpg")[..., 0] > 128).astype(np.uint8) * 255
    Image.fromarray(drawn).save(root / "msk" / "A1_segmentation.png")
    cases, _ = build_datalist(DataConfig(root=root, image_dir="img", mask_dir="msk", metadata=None))
    loaded = load_image(cases[0].images, 2, channels=3)
    label = load_image(cases[0].label, 2, is_label=True)
    inside = loaded.numpy()[0][label.numpy()[0] > 0]
    assert inside.size == 200 and inside.min() > 0.8  # the mask covers the bright block exactly


def test_pixel_limit_refuses_a_bomb_before_decoding_in_bounded_memory(tmp_path):
    """20000 x 20000 pixels (400 million); run under a 1 GiB address-space limit so a regression
    that decodes the picture fails instead of exhausting the machine."""
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from medseg.io.readers import read_image2d\nfrom medseg.errors import DataError\n"
        f"try:\n    read_image2d({str(bomb)!r})\nexcept DataError as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert "bomb.png: 20000x20000 pixels is over the limit of 89,478,485 pixels" in proc.stdout
    assert "data.max_image_pixels" in proc.stdout and "--max-image-pixels" in proc.stdout


def test_pixel_limit_can_be_lowered_and_raised(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    try:
        set_pixel_limit(9999)
        with pytest.raises(DataError, match="100x100 pixels is over the limit of 9,999 pixels"):
            read_raster(path)
        set_pixel_limit(10_000)
        assert read_raster(path).shape == (100, 100)
    finally:
        set_pixel_limit(None)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_PIXEL_LIMIT


@pytest.mark.parametrize(
    ("mode", "channels", "expected"),
    [
        ("RGBA", 3, (8, 6, 3)),
        ("P", 3, (8, 6, 3)),
        ("LA", 1, (8, 6)),
        ("I;16", 1, (8, 6)),
    ],
)
def test_channels_are_converted_where_the_meaning_is_clear(tmp_path, mode, channels, expected):
    path = tmp_path / "x.png"
    picture = Image.new("RGB", (6, 8), (10, 200, 30))
    picture = picture.quantize(4) if mode == "P" else picture.convert(mode)
    picture.save(path)
    array = read_raster(path, channels)
    assert array.shape == expected
    if channels == 3:
        assert array[0, 0].tolist() == [10, 200, 30]


@pytest.mark.parametrize(
    ("mode", "channels", "have"), [("L", 3, 1), ("CMYK", 3, 4), ("RGB", 1, 3), ("P", 1, 1)]
)
def test_other_channel_counts_are_refused_with_the_expected_count(tmp_path, mode, channels, have):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    Image.new(mode, (6, 8)).save(path)
    with pytest.raises(
        DataError, match=rf"x\.\w+: a {mode} picture \({have} channel\(s\)\); the model takes {channels}"
    ):
        read_raster(path, channels)


def test_masks_are_read_as_stored_palette_indices_included(tmp_path):
    path = tmp_path / "m.png"
    mask = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    mask.save(path)
    assert read_mask(path).array.tolist() == [[0, 1], [2, 1]]
