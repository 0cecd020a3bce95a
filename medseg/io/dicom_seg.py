"""DICOM Segmentation objects (SEG): read with highdicom into a label map on the canonical grid, and
written so that viewers can use them.

A written SEG is BINARY, one segment per class, every frame of the source present (a segment's
empty frames included, so viewers never misplace a segment), each frame referencing its source
image. Each segment carries its SNOMED CT category and type (and laterality), a recommended CIELab
display colour, a tracking id and UID (:mod:`medseg.io.segment_codes`), and the algorithm that
made it: the pipeline, the run, the folds, a digest of the model and the medseg version.

Its UIDs (series, instance, each segment's tracking UID) are not random: they are name-based
(``2.25.`` and a UUID of :func:`uid_seed`), derived from the source instances and the algorithm's
identity, so the same series segmented by the same model gives the same SEG UIDs in any output
folder, on any machine. A PACS can tell it holds that SEG already (:mod:`medseg.infer.pacs` asks
before sending), and a different model, fold set or setting gives different UIDs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.errors import DataError
from medseg.io.atomic import atomic_path
from medseg.io.dicom import LPS_TO_RAS, SliceGeometry, folder_geometry, read_header, series_geometry
from medseg.io.geometry import AFFINE_TOL, canonical_geometry, reorient, to_canonical
from medseg.io.segment_codes import SegmentCode, segment_code

UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "medseg:dicom-uid")  # of medseg's name-based UIDs


@dataclass(frozen=True)
class Segments:
    """What a SEG says about its segments and the algorithm that made them.

    Attributes:
        names: segment label per class value.
        codes: SNOMED CT codes and colour per class value (default: from the names).
        algorithm: the algorithm's name (the pipeline).
        version: its version (medseg's, with the run).
        parameters: what else identifies it (run, folds), as AlgorithmParameters.
    """

    names: dict[int, str]
    codes: dict[int, SegmentCode] = field(default_factory=dict)
    algorithm: str = "medseg"
    version: str = __version__
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The algorithm in one line: name, version and parameters."""
        return ", ".join([self.algorithm, self.version, *(f"{k} {v}" for k, v in self.parameters.items())])

    def code(self, value: int) -> SegmentCode:
        return self.codes.get(value) or segment_code(self.names[value], value)


def model_digest(checkpoints: list[Path], settings: dict[str, Any]) -> str:
    """A short digest of a model: its weight files' bytes (in the order given) and the settings
    that shape its predictions, for a SEG's algorithm parameters and so for its UIDs.

    Example:
        >>> model_digest([], {"overlap": 0.5}) == model_digest([], {"overlap": 0.5})
        True
        >>> model_digest([], {"overlap": 0.5}) == model_digest([], {"overlap": 0.25})
        False
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in checkpoints:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def uid_seed(sources: list[Any], segments: Segments) -> str:
    """What makes a SEG this SEG: the source series and instances it references, the algorithm's
    identity (name, version, run, folds, model digest) and the segments' names."""
    series = sorted({str(s.get("SeriesInstanceUID", "")) for s in sources})
    instances = sorted(str(s.get("SOPInstanceUID", "")) for s in sources)
    names = json.dumps(sorted(segments.names.items()))
    return "\n".join([segments.identity, names, *series, *instances])


def derived_uid(role: str, seed: str) -> str:
    """A UID under ``2.25`` (ISO/IEC 9834-8: the integer of a UUID), the UUID name-based on
    ``role`` and ``seed``: the same on every machine and in every run.

    Example:
        >>> uid = derived_uid("series", "seed")
        >>> uid == derived_uid("series", "seed") != derived_uid("instance", "seed")
        True
        >>> uid.startswith("2.25.") and len(uid) <= 64
        True
    """
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, role + chr(10) + seed).int}"


def read_seg(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM SEG as a label map in the canonical RAS+ frame; segment number k becomes label k.

    Args:
        path: the SEG file.

    Returns:
        (label map uint16, its RAS affine).

    Raises:
        DataError: the file is not a readable SEG.
    """
    import highdicom as hd

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
    """Whether the DICOM file at ``path`` is a Segmentation object (Modality SEG)."""

    return str(read_header(path).get("Modality", "")).upper() == "SEG"


def write_seg(
    label: np.ndarray,
    affine: np.ndarray,
    series: str | Path | list[Path],
    path: str | Path,
    segments: Segments,
    series_description: str = "medseg segmentation",
    headers: tuple[Any, ...] = (),
) -> Path:
    """Write a binary DICOM SEG, one segment per label, that references a DICOM series.

    Args:
        label: integer label map on the canonical grid.
        affine: its RAS affine.
        series: the DICOM series (its folder or its files).
        path: the SEG file to write (atomically).
        segments: names, codes and algorithm of the segments, by class value.
        series_description: the SEG's SeriesDescription.
        headers: the series' headers as reading it kept them (no pixel data); read again otherwise.

    Returns:
        ``path``.

    Raises:
        DataError: the label is not on the series' grid.
    """
    geom, sources = series_headers(series, headers)
    native = on_series_grid(label, affine, geom, Path(path))
    frames = np.ascontiguousarray(native.transpose(2, 1, 0))
    return _save_seg(frames, sources, Path(path), segments, series_description)


def series_headers(
    series: str | Path | list[Path], headers: tuple[Any, ...] = ()
) -> tuple[SliceGeometry, list[Any]]:
    """The checked geometry of a series and its headers in slice order: from ``headers`` kept by
    the reader (each knows its file), else read from the files (no pixel data)."""
    if headers:
        pairs = [(Path(h.filename), h) for h in headers]
        geom = series_geometry(pairs, str(pairs[0][0].parent))
        by_path = dict(pairs)
        return geom, [by_path[f] for f in geom.files]
    if isinstance(series, list):
        read = {Path(f): read_header(f) for f in series}
        geom = series_geometry(list(read.items()), str(Path(series[0]).parent))
        return geom, [read[Path(f)] for f in geom.files]  # headers only: a SEG needs no source pixels
    geom = folder_geometry(series)
    return geom, [read_header(f) for f in geom.files]


def on_series_grid(label: np.ndarray, affine: np.ndarray, geom: SliceGeometry, path: Path) -> np.ndarray:
    """``label`` (canonical grid, RAS ``affine``) in the series' own voxel order (columns, rows,
    slices), for a file ``path`` that references the series.

    Raises:
        DataError: the label is not on the series' grid.
    """
    canon_shape, canon_affine = canonical_geometry(geom.shape, geom.affine)
    if tuple(label.shape) != tuple(canon_shape):
        raise DataError(f"{path}: label shape {label.shape} does not match the series {geom.shape}")
    if np.abs(canon_affine - affine).max() > AFFINE_TOL:
        raise DataError(f"{path}: the label is not on the grid of the series")
    return reorient(label, affine, geom.affine)


def write_seg_image(
    label: np.ndarray,
    source: str | Path,
    path: str | Path,
    segments: Segments,
    series_description: str = "medseg segmentation",
    header: Any = None,
) -> Path:
    """A DICOM SEG of ``label`` (rows, columns) on the single-frame DICOM image ``source`` (its
    ``header`` as reading it kept it, or read again)."""
    ds = header if header is not None else read_header(source)
    if tuple(label.shape) != (int(ds.Rows), int(ds.Columns)):
        raise DataError(f"{path}: label shape {label.shape} does not match the image {ds.Rows}x{ds.Columns}")
    return _save_seg(np.asarray(label)[None], [ds], Path(path), segments, series_description)


def _save_seg(
    frames: np.ndarray, sources: list, path: Path, segments: Segments, series_description: str
) -> Path:
    """Build the Segmentation with highdicom (frames: (n, rows, columns) class values) and save it."""
    import warnings

    import highdicom as hd

    seed = uid_seed(sources, segments)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=segments.algorithm[:64],
        version=segments.version[:64],
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"),
        source="medseg",
        parameters=segments.parameters or None,
    )
    descriptions, masks = [], []
    for number, (value, name) in enumerate(sorted(segments.names.items()), start=1):
        tracking_uid = derived_uid(f"segment {number}", seed)
        descriptions.append(_description(number, name, segments.code(value), algorithm, tracking_uid))
        masks.append(frames == value)
    with warnings.catch_warnings():
        # highdicom warns about odd person names by quoting them: that would put PatientName in logs
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=np.stack(masks, axis=-1).astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=derived_uid("series", seed),
            series_number=900,
            sop_instance_uid=derived_uid("instance", seed),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name=segments.algorithm[:64],
            software_versions=__version__,
            device_serial_number="0",
            series_description=series_description,
            omit_empty_frames=False,
        )
        if "ImageOrientationPatient" not in sources[0] and "PatientOrientation" not in seg:
            # projection images (mammograms, radiographs): the frames lie as the source does
            seg.PatientOrientation = _orientation(sources[0].get("PatientOrientation"))
        with atomic_path(path) as tmp:
            seg.save_as(tmp)
    return Path(path)


def _description(number: int, name: str, code: SegmentCode, algorithm: Any, tracking_uid: str) -> Any:
    """One segment's description: label, codes, laterality, colour, tracking id and UID."""
    import highdicom as hd

    concept = hd.sr.CodedConcept
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=concept(*code.category),
        segmented_property_type=concept(*code.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_id=name[:64],
        tracking_uid=tracking_uid,
        display_color=hd.color.CIELabColor.from_rgb(*code.rgb),
    )
    if code.laterality is not None:
        item = description.SegmentedPropertyTypeCodeSequence[0]
        item.SegmentedPropertyTypeModifierCodeSequence = [concept(*code.laterality)]
    return description


def _orientation(value: Any) -> Any:
    """A source's PatientOrientation when it is valid (two directions of A, P, R, L, H, F), else
    empty (allowed: the value is Type 2): CBIS-DDSM files, for one, hold their view there ("CC")."""
    import re

    from pydicom.multival import MultiValue

    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    if len(values) == 2 and all(re.fullmatch(r"[APRLHF]+", str(v) or "") for v in values):
        return values
    return ""
