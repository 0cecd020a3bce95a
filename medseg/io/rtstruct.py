"""DICOM RT Structure Sets (RTSTRUCT) of a label map, for treatment-planning systems that do not
read DICOM SEG.

Each class becomes one ROI: on every slice of the source series, the outline of each connected
region (``skimage.measure.find_contours`` at half the mask, so an outline runs along pixel edges'
middles) as a CLOSED_PLANAR contour in patient coordinates (mm, LPS), referencing that slice's
image. ROI names, colours and the algorithm come from the same :class:`~medseg.io.dicom_seg.Segments`
as the SEG.

Outlines are simplified (``skimage.measure.approximate_polygon``, Douglas-Peucker) with a tolerance
below a pixel: no point of the outline moves further than that, while a pixel staircase along a
straight or slanted edge becomes one segment. At the default quarter pixel an organ's outline keeps
about a quarter of its points and, drawn back, covers the same pixels. A fragmented prediction (a
poor model: noise on every slice) would still need tens of thousands of contours and hundreds of MB;
above ``max_contours`` the file is refused before anything is built, with the count and the class
most fragmented.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.errors import DataError
from medseg.io.atomic import atomic_path
from medseg.io.dicom_seg import Segments, on_series_grid, series_headers

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID",
    "PositionReferenceIndicator",
)  # fmt: skip


def contours(mask: np.ndarray, tolerance: float = 0.0) -> list[np.ndarray]:
    """Closed outlines of a 2D mask (rows, columns) as (n, 2) arrays of (row, column) points (the
    closing point not repeated), each :func:`simplified` with ``tolerance`` pixels.

    Example:
        >>> m = np.zeros((9, 9), bool); m[1:7, 1:5] = True; m[5:7, 5:8] = True  # an L
        >>> [c.shape for c in contours(m)], [c.shape for c in contours(m, 0.25)]
        ([(26, 2)], [(12, 2)])
    """
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    return [simplified(c[:-1] - 1, tolerance) for c in find_contours(padded, 0.5) if len(c) > 3]


def simplified(outline: np.ndarray, tolerance: float) -> np.ndarray:
    """A closed outline (closing point not repeated) with the points Douglas-Peucker leaves at
    ``tolerance`` (``skimage.measure.approximate_polygon``): none of the outline lies further than
    that from the result. 0, or an outline that would fall below three points, keeps every point."""
    from skimage.measure import approximate_polygon

    if tolerance <= 0:
        return outline
    simple = approximate_polygon(np.vstack([outline, outline[:1]]), tolerance)[:-1]
    return simple if len(simple) >= 3 else outline


def outlines(native: np.ndarray, values: list[int]) -> dict[int, list[list[np.ndarray]]]:
    """Per class value, per slice (the last axis of ``native``, the label in the series' own voxel
    order), the :func:`contours` of the slice's (rows, columns) mask, every point kept."""
    from scipy import ndimage

    boxes = ndimage.find_objects(native)
    found: dict[int, list[list[np.ndarray]]] = {}
    for value in values:
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        per_slice: list[list[np.ndarray]] = [[] for _ in range(native.shape[2])]
        if box is not None:  # only the slices the class is on
            for k in range(box[2].start, box[2].stop):
                per_slice[k] = contours((native[:, :, k] == value).T)
        found[value] = per_slice
    return found


def check_size(found: dict[int, list[list[np.ndarray]]], names: dict[int, str], max_contours: int) -> None:
    """Refuse an RTSTRUCT of more than ``max_contours`` contours, naming the count, the points and
    the class with the most contours.

    Raises:
        DataError: too many contours.
    """
    counts = {value: sum(len(s) for s in per_slice) for value, per_slice in found.items()}
    total = sum(counts.values())
    if total <= max_contours:
        return
    points = sum(len(c) for per_slice in found.values() for s in per_slice for c in s)
    worst = max(counts, key=counts.__getitem__)
    raise DataError(
        f"not written: {total:,} contours ({points:,} points; '{names[worst]}' alone {counts[worst]:,}) are "
        f"more than predict.rtstruct_max_contours ({max_contours:,}): the prediction is fragmented, as a "
        "poor model's is; check the model, or raise the limit (--set predict.rtstruct_max_contours=N)"
    )


def write_rtstruct(
    label: np.ndarray,
    affine: np.ndarray,
    files: list[Path],
    path: str | Path,
    segments: Segments,
    headers: tuple[Any, ...] = (),
    max_contours: int = 20_000,
    tolerance: float = 0.25,
) -> Path:
    """An RTSTRUCT of ``label`` (canonical grid, RAS ``affine``) on the DICOM series ``files``
    (``headers``: the series' headers as reading it kept them; read again otherwise), its outlines
    simplified with ``tolerance`` pixels.

    Raises:
        DataError: the label is not on the series' grid, or needs more than ``max_contours``
            contours (nothing is written).
    """
    from pydicom.dataset import Dataset

    geom, ordered = series_headers(list(files), headers)
    native = on_series_grid(label, affine, geom, Path(path))
    found = outlines(np.asarray(native), sorted(segments.names))
    check_size(found, segments.names, max_contours)  # before anything is built
    found = {v: [[simplified(c, tolerance) for c in s] for s in per_slice] for v, per_slice in found.items()}
    first = ordered[0]
    ds = _structure_set(ordered, segments)
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (value, name) in enumerate(sorted(segments.names.items()), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, first.FrameOfReferenceUID
        roi.ROIName, roi.ROIGenerationAlgorithm = name[:64], "AUTOMATIC"
        ds.StructureSetROISequence.append(roi)
        contoured = _roi_contours(found[value], geom.affine_lps, ordered, number, segments.code(value).rgb)
        ds.ROIContourSequence.append(contoured)
        seen = Dataset()
        seen.ObservationNumber, seen.ReferencedROINumber = number, number
        seen.RTROIInterpretedType, seen.ROIInterpreter = "ORGAN", ""
        ds.RTROIObservationsSequence.append(seen)
    with atomic_path(Path(path)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _structure_set(ordered: list, segments: Segments) -> Any:
    """The RTSTRUCT's header: patient and study copied from the series, the structure set's own
    identity, and the frame of reference with every slice of the series it references."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

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
    return ds


def _roi_contours(
    per_slice: list[list[np.ndarray]],
    affine_lps: np.ndarray,
    headers: list,
    number: int,
    rgb: tuple[int, int, int],
) -> object:
    """One ROI's ROIContourSequence item: every slice's outlines in patient coordinates."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = list(rgb)
    item.ContourSequence = Sequence()
    for k, header in enumerate(headers):
        for outline in per_slice[k]:
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
