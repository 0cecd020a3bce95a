"""A SEG's UIDs derive from its source and the model that made it: the same result has the same
UIDs wherever and whenever it is written, another source or model gets other UIDs."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pydicom
import pytest

from medseg.data.synthetic_ct import affine_for, write_ct_series
from medseg.io.dicom_seg import Segments, model_digest, write_seg
from medseg.io.geometry import to_canonical

from ..conftest import dciodvfy_errors

UID = re.compile(r"2\.25\.(0|[1-9][0-9]*)")


@pytest.fixture
def label_and_affine():
    shape = (16, 12, 6)
    label = np.zeros(shape, np.uint8)
    label[3:8, 3:7, 1:4] = 1
    label[9:14, 5:10, 2:5] = 2
    return to_canonical(label, affine_for(shape, lps=False))


def _segments(model: str) -> Segments:
    return Segments(
        {1: "liver", 2: "spleen"}, algorithm="ct", parameters={"run": "r", "folds": "0", "model": model}
    )


def _uids(path):
    ds = pydicom.dcmread(path)
    tracking = [str(s.TrackingUID) for s in ds.SegmentSequence]
    return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), tracking


def test_seg_uids_are_derived_from_the_source_and_the_model(tmp_path, label_and_affine):
    label, affine = label_and_affine
    for name, series_uid in (
        ("one", "1.2.826.0.1.3680043.8.498.11"),
        ("two", "1.2.826.0.1.3680043.8.498.12"),
    ):
        write_ct_series(
            np.full((16, 12, 6), 40.0), affine_for((16, 12, 6), lps=False), tmp_path / name, series_uid
        )
    first = _uids(write_seg(label, affine, tmp_path / "one", tmp_path / "a" / "seg.dcm", _segments("m1")))
    again = _uids(write_seg(label, affine, tmp_path / "one", tmp_path / "b" / "seg.dcm", _segments("m1")))
    other_model = _uids(write_seg(label, affine, tmp_path / "one", tmp_path / "c.dcm", _segments("m2")))
    other_series = _uids(write_seg(label, affine, tmp_path / "two", tmp_path / "d.dcm", _segments("m1")))
    assert first == again  # another output folder, the same SEG
    series, sop, tracking = first
    assert all(UID.fullmatch(u) and len(u) <= 64 for u in (series, sop, *tracking))
    assert len({series, sop, *tracking}) == 4  # series, instance and each segment: all different
    for other in (other_model, other_series):
        assert not {other[0], other[1], *other[2]} & {series, sop, *tracking}
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(tmp_path / "a" / "seg.dcm") == []


def test_the_model_digest_changes_with_any_weight_byte_and_with_a_setting(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"\x00" * 3_000_000)
    base = model_digest([tmp_path / "best.pt"], {"infer": {"overlap": 0.5}})
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert model_digest([tmp_path / "best.pt"], {"infer": {"overlap": 0.5}}) == base
    assert model_digest([tmp_path / "best.pt"], {"infer": {"overlap": 0.25}}) != base
    (tmp_path / "best.pt").write_bytes(b"\x00" * 2_999_999 + b"\x01")
    assert model_digest([tmp_path / "best.pt"], {"infer": {"overlap": 0.5}}) != base
