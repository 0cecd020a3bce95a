"""DICOM RT Structure Sets (RTSTRUCT) of a label map, for treatment-planning systems that do not
read DICOM SEG.

Each class becomes one ROI: on every slice of the source series, the outline of each connected
region (``skimage.measure.find_contours`` at half the mask, so an outline runs along pixel edges'
middles) as a CLOSED_PLANAR contour in patient coordinates (mm, LPS), referencing that slice's
image. ROI names, colours and the algorithm come from the same :class:`~medseg.io.dicom_seg.Segments`
as the SEG.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.io.atomic import atomic_path
from medseg.io.dicom_seg import Segments, on_series_grid, series_headers

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID",
    "PositionReferenceIndicator",
)  # fmt: skip


def contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a 2D mask (rows, columns) as (n, 2) arrays of (row, column) points.

    Example:
        >>> m = np.zeros((5, 5), bool); m[1:3, 1:4] = True
        >>> [c.shape for c in contours(m)]
        [(10, 2)]
    """
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    return [c[:-1] - 1 for c in find_contours(padded, 0.5) if len(c) > 3]


def write_rtstruct(
    label: np.ndarray,
    affine: np.ndarray,
    files: list[Path],
    path: str | Path,
    segments: Segments,
    headers: tuple[Any, ...] = (),
) -> Path:
    """An RTSTRUCT of ``label`` (canonical grid, RAS ``affine``) on the DICOM series ``files``
    (``headers``: the series' headers as reading it kept them; read again otherwise).

    Raises:
        DataError: the label is not on the series' grid.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    geom, ordered = series_headers(list(files), headers)
    native = on_series_grid(label, affine, geom, Path(path))
    first = ordered[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(RT_STRUCTURE_SET_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in COPIED:
        setattr(ds, keyword, first.get(keyword, ""))
    now = datetime.datetime.now()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 901
    ds.SeriesDescription = "medseg structures"
    ds.Manufacturer, ds.SoftwareVersions = "medseg", __version__
    ds.ManufacturerModelName = segments.algorithm[:64]
    ds.InstanceNumber, ds.OperatorsName = 1, ""
    ds.StructureSetLabel = segments.algorithm[:16] or "medseg"
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime
    images = Sequence()
    for h in ordered:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = h.SOPClassUID, h.SOPInstanceUID
        images.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID, series_item.ContourImageSequence = first.SeriesInstanceUID, images
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired)
    study_item.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_item.RTReferencedSeriesSequence = Sequence([series_item])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = Sequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (value, name) in enumerate(sorted(segments.names.items()), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, first.FrameOfReferenceUID
        roi.ROIName, roi.ROIGenerationAlgorithm = name[:64], "AUTOMATIC"
        ds.StructureSetROISequence.append(roi)
        outlines = _roi_contours(native == value, geom.affine_lps, ordered, number, segments.code(value).rgb)
        ds.ROIContourSequence.append(outlines)
        seen = Dataset()
        seen.ObservationNumber, seen.ReferencedROINumber = number, number
        seen.RTROIInterpretedType, seen.ROIInterpreter = "ORGAN", ""
        ds.RTROIObservationsSequence.append(seen)
    with atomic_path(Path(path)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _roi_contours(
    mask: np.ndarray, affine_lps: np.ndarray, headers: list, number: int, rgb: tuple[int, int, int]
) -> object:
    """One ROI's ROIContourSequence item: every slice's outlines in patient coordinates."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = list(rgb)
    item.ContourSequence = Sequence()
    for k, header in enumerate(headers):
        for outline in contours(mask[:, :, k].T):
            index = np.c_[outline[:, 1], outline[:, 0], np.full(len(outline), k), np.ones(len(outline))]
            points = (affine_lps @ index.T)[:3].T
            contour = Dataset()
            ref = Dataset()
            ref.ReferencedSOPClassUID = header.SOPClassUID
            ref.ReferencedSOPInstanceUID = header.SOPInstanceUID
            contour.ContourImageSequence = Sequence([ref])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.3f}" for v in points.ravel()]
            item.ContourSequence.append(contour)
    if not item.ContourSequence:  # an ROI the model did not find: listed, without contours
        del item.ContourSequence
    return item
