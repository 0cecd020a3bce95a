"""DICOM SEG a viewer can use: SNOMED CT codes with laterality, colours, tracking, the algorithm,
every frame of the source present; and dciodvfy (Debian dicom3tools) finds no error in it."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pydicom
import pytest

from medseg.data.synthetic_ct import affine_for, write_ct_series
from medseg.errors import MedsegError
from medseg.infer.outputs import segments_of
from medseg.io.dicom_seg import write_seg
from medseg.io.geometry import to_canonical

from ..conftest import dciodvfy_errors, tiny_config

SERIES_UID = "1.2.826.0.1.3680043.8.498.77"


@pytest.fixture
def series_and_label(tmp_path):
    shape = (24, 20, 10)
    hu = np.full(shape, -50.0)
    write_ct_series(hu, affine_for(shape, lps=False), tmp_path / "series", SERIES_UID)
    label = np.zeros(shape, np.uint8)
    label[4:10, 4:9, 3:6] = 1  # liver on slices 3-5 only
    label[14:20, 10:15, 4:8] = 2  # kidney_left
    label[2:4, 15:18, 6] = 3  # a class with no code
    canon, canon_affine = to_canonical(label, affine_for(shape, lps=False))
    return tmp_path / "series", canon, canon_affine


def test_segments_are_coded_coloured_tracked_and_every_frame_is_there(series_and_label, tmp_path, caplog):
    series, label, affine = series_and_label
    cfg = tiny_config(
        tmp_path,
        tmp_path / "run",
        name="abdomen",
        data={"num_classes": 4, "labels": {"liver": 1, "Left kidney": 2, "blob": 3}},
    )
    with caplog.at_level(logging.WARNING):
        segments = segments_of(cfg, run="abdomen-run (MLflow run abc)", folds="0,1")
    assert "class 'blob' has no SNOMED CT code" in caplog.text
    path = write_seg(label, affine, series, tmp_path / "seg.dcm", segments)
    ds = pydicom.dcmread(path)
    seg = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    assert [seg[k].SegmentLabel for k in (1, 2, 3)] == ["liver", "Left kidney", "blob"]
    types = {k: s.SegmentedPropertyTypeCodeSequence[0] for k, s in seg.items()}
    assert types[1].CodeValue == "10200004" and types[1].CodingSchemeDesignator == "SCT"
    assert types[2].CodeValue == "64033007"  # kidney, and left:
    assert types[2].SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    assert types[3].CodeValue == "91723000"  # the generic fallback
    colours = [tuple(s.RecommendedDisplayCIELabValue) for s in seg.values()]
    assert len(set(colours)) == 3
    assert all(s.TrackingID == s.SegmentLabel and s.TrackingUID for s in seg.values())
    algorithm = seg[1].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "abdomen" and algorithm.AlgorithmVersion.startswith("medseg ")
    assert (
        "abdomen-run (MLflow run abc)" in algorithm.AlgorithmParameters
        and "0,1" in algorithm.AlgorithmParameters
    )
    # every frame of every segment, empty ones included, each referencing its own source slice
    assert int(ds.NumberOfFrames) == 3 * 10
    sources = {pydicom.dcmread(f).SOPInstanceUID for f in series.iterdir()}
    referenced = [
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    assert set(referenced) == sources and len(referenced) == 30
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(path) == []


def test_built_in_codes_by_name_and_a_wrong_one_refused(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path / "run", data={"label_codes": {"class_1": "skin_lesion"}})
    code = segments_of(cfg).codes[1]
    assert code.type == ("52988006", "SCT", "Lesion") and code.category[0] == "49755003"
    own = {
        "category": ["49755003", "SCT", "Morphologically Abnormal Structure"],
        "type": ["4147007", "SCT", "Mass"],
        "laterality": "right",
        "color": [10, 20, 30],
    }
    mass = tiny_config(tmp_path, tmp_path / "run", data={"label_codes": {"class_1": own}})
    code = segments_of(mass).codes[1]
    assert code.type[0] == "4147007" and code.laterality == ("24028007", "SCT", "Right")
    assert code.rgb == (10, 20, 30)
    wrong = tiny_config(tmp_path, tmp_path / "run", data={"label_codes": {"class_1": "spleeen"}})
    with pytest.raises(MedsegError, match="data.label_codes: 'spleeen' is not a built-in code"):
        segments_of(wrong)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_dciodvfy_finds_no_error_in_a_single_image_seg(tmp_path):
    from medseg.io.dicom_seg import Segments, write_seg_image

    shape = (24, 20, 1)
    write_ct_series(np.zeros(shape), affine_for(shape, lps=False), tmp_path / "one", SERIES_UID + ".1")
    (source,) = (tmp_path / "one").iterdir()
    label = np.zeros((20, 24), np.uint8)
    label[5:9, 6:12] = 1
    path = write_seg_image(label, source, tmp_path / "seg.dcm", Segments({1: "breast_mass"}))
    assert dciodvfy_errors(path) == []
