"""DICOM Segmentation objects (SEG) read with highdicom into a label map on the canonical grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.io.dicom import LPS_TO_RAS


def read_seg(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(label map uint16 in the canonical RAS+ frame, its affine): segment number k becomes label k."""
    import highdicom as hd

    from medseg.io.volume import to_canonical

    try:
        seg = hd.seg.segread(str(path))
        volume = seg.get_volume(combine_segments=True, dtype=np.uint16)
    except Exception as err:
        raise DataError(f"{path}: cannot read the DICOM SEG ({type(err).__name__}: {err})") from None
    array = np.asarray(volume.array)
    affine = LPS_TO_RAS @ np.asarray(volume.affine, dtype=float)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    return to_canonical(array, affine)


def is_seg(path: str | Path) -> bool:
    from medseg.io.dicom import read_header

    return str(read_header(path).get("Modality", "")).upper() == "SEG"


def write_seg(
    label: np.ndarray,
    affine: np.ndarray,
    series_dir: str | Path,
    path: str | Path,
    names: dict[int, str],
    series_description: str = "medseg segmentation",
) -> Path:
    """A DICOM SEG (binary, one segment per label) of ``label`` (canonical grid, RAS ``affine``) that
    references the DICOM series in ``series_dir``; written atomically."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    from medseg import __version__
    from medseg.io.atomic import atomic_path
    from medseg.io.dicom import folder_geometry
    from medseg.io.volume import AFFINE_TOL, canonical_geometry, reorient

    geom = folder_geometry(series_dir)
    canon_shape, canon_affine = canonical_geometry(geom.shape, geom.affine)
    if tuple(label.shape) != tuple(canon_shape):
        raise DataError(f"{path}: label shape {label.shape} does not match the series {geom.shape}")
    if np.abs(canon_affine - affine).max() > AFFINE_TOL:
        raise DataError(f"{path}: the label is not on the grid of the series in {series_dir}")
    native = reorient(label, affine, geom.affine)  # (columns, rows, slices) in the series' order
    frames = np.ascontiguousarray(native.transpose(2, 1, 0))
    sources = [pydicom.dcmread(f) for f in geom.files]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg",
        version=__version__,
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"),
    )
    descriptions, masks = [], []
    for number, (value, name) in enumerate(sorted(names.items()), start=1):
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
                segmented_property_type=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
        masks.append(frames == value)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.stack(masks, axis=-1).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name="medseg",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=False,
    )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)
