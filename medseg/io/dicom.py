"""DICOM with pydicom: find series in a folder tree, check and sort their slices, read HU volumes.

Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product of the
two ImageOrientationPatient directions), never by InstanceNumber. A series must have one
orientation, one image size, no duplicate positions, no gantry tilt and a uniform slice step;
otherwise a DataError names the series, the files and what is wrong. Pixel values go through the
modality LUT (RescaleSlope and RescaleIntercept), so CT comes out in Hounsfield units. Compressed
transfer syntaxes decode through pydicom's pixel handlers (RLE natively; JPEG 2000, JPEG lossless
and JPEG-LS through pylibjpeg and its plug-ins).

Volumes use the NIfTI convention: array axes (column, row, slice) and a 4x4 affine to RAS+ mm.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError

log = logging.getLogger(__name__)

# Objects that carry no image to segment: structured reports, segmentations, RT structures and
# plans, presentation states, key-object selections, registrations, encapsulated documents.
NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "KO", "REG", "DOC", "RWV"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOL = 1e-4  # direction cosines
POSITION_TOL = 1e-3  # mm
SPACING_REL_TOL = 0.01  # slice steps may differ by 1% of the median step
PIXEL_DATA = 0x7FE00010
TILT_COS_TOL = 0.9999  # about 0.8 degrees between the stacking direction and the slice normal


@dataclass
class SeriesInfo:
    """The files of one DICOM series and what its first header says.

    Attributes:
        uid: SeriesInstanceUID.
        files: the series' files.
        modality: the DICOM Modality.
        description: SeriesDescription.
    """

    uid: str
    files: list[Path] = field(default_factory=list)
    modality: str = ""
    description: str = ""


@dataclass
class DicomScan:
    """Image series found under a folder, and the files skipped with their reasons.

    Attributes:
        series: the series by SeriesInstanceUID.
        skipped: (file, reason) of each file not taken.
    """

    series: dict[str, SeriesInfo]
    skipped: list[tuple[str, str]]  # (path, reason)


def read_header(path: str | Path) -> Any:
    """Header only (no pixel data); DataError when the file is not DICOM or cannot be parsed."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as err:  # truncated or malformed elements
        raise DataError(f"{path}: unreadable DICOM ({type(err).__name__}: {err})") from None


def is_image(ds: Any) -> str | None:
    """Why ``ds`` is not an image to segment, or None when it is."""
    modality = str(ds.get("Modality", "")).upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"non-image object (Modality {modality})"
    if "Rows" not in ds or "Columns" not in ds:
        return "no pixel data (no Rows/Columns)"
    return None


def scan_tree(root: str | Path) -> DicomScan:
    """Group every DICOM image file under ``root`` by SeriesInstanceUID; log and list the rest."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    series: dict[str, SeriesInfo] = {}
    skipped: list[tuple[str, str]] = []
    paths = [root] if root.is_file() else sorted(walk_files(root))
    for path in paths:
        try:
            ds = read_header(path)
        except DataError as err:
            skipped.append((str(path), str(err).removeprefix(f"{path}: ")))
            continue
        reason = is_image(ds)
        if reason:
            skipped.append((str(path), reason))
            continue
        # Anonymised files sometimes lack the UID: group those by folder and SeriesNumber instead.
        uid = str(ds.get("SeriesInstanceUID", "")) or f"{path.parent}#{ds.get('SeriesNumber', '')}"
        info = series.setdefault(uid, SeriesInfo(uid, [], str(ds.get("Modality", "")), ""))
        info.description = info.description or str(ds.get("SeriesDescription", ""))
        info.files.append(path)
    for skipped_path, reason in skipped:
        log.info("skipping %s: %s", skipped_path, reason)
    return DicomScan(series, skipped)


def walk_files(root: Path) -> list[Path]:
    """Every file under ``root`` (hidden ones left out), folders in sorted order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return out


@dataclass
class SliceGeometry:
    """The checked geometry of a series.

    Attributes:
        files: the files in stacking order.
        shape: (columns, rows, slices).
        affine_lps: the voxel-to-patient (LPS) affine.
    """

    files: list[Path]
    shape: tuple[int, int, int]  # (columns, rows, slices)
    affine_lps: np.ndarray

    @property
    def affine(self) -> np.ndarray:
        return LPS_TO_RAS @ self.affine_lps


def series_geometry(headers: list[tuple[Path, Any]], name: str) -> SliceGeometry:
    """Check and sort the slices of one series (``headers`` as (path, dataset) pairs).

    Raises:
        DataError: naming the series and the files: missing position tags, mixed orientations,
            sizes or pixel spacings, duplicate positions, gantry tilt or irregular slice steps.
    """
    if not headers:
        raise DataError(f"{name}: no DICOM image files")
    iops = _check_slices_agree(headers, name)
    row_dir, col_dir = iops[0][:3], iops[0][3:]
    normal = np.cross(row_dir, col_dir)
    ipps = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    dist = ipps @ normal
    order = np.argsort(dist, kind="stable")
    files = [headers[i][0] for i in order]
    dist, ipps = dist[order], ipps[order]
    rows, cols = int(headers[0][1].Rows), int(headers[0][1].Columns)
    row_spacing, col_spacing = (float(v) for v in headers[0][1].PixelSpacing)
    if len(files) > 1:
        _check_stacking(files, dist, ipps, normal, name)
        slice_vec = (ipps[-1] - ipps[0]) / (len(files) - 1)
    else:
        thickness = float(headers[0][1].get("SliceThickness", 1.0) or 1.0)
        slice_vec = normal * thickness
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing  # array axis 0 runs along a row (column index)
    affine[:3, 1] = col_dir * row_spacing  # array axis 1 runs down a column (row index)
    affine[:3, 2] = slice_vec
    affine[:3, 3] = ipps[0]
    return SliceGeometry(files, (cols, rows, len(files)), affine)


def _check_slices_agree(headers: list[tuple[Path, Any]], name: str) -> np.ndarray:
    """Every slice has position tags, one frame, and the orientation, size and pixel spacing of
    the others; the orientations (n, 6)."""
    for path, ds in headers:
        for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            if tag not in ds:
                raise DataError(f"{path}: no {tag}; a volume needs it (is this a single 2D image?)")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{path}: multi-frame DICOM is not supported as a series; convert it to NIfTI")
    iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in headers])
    if np.abs(iops - iops[0]).max() > ORIENTATION_TOL:
        odd = [str(p) for (p, _), o in zip(headers, iops, strict=True) if np.abs(o - iops[0]).max() > 1e-4]
        raise DataError(f"{name}: slices with different orientations, e.g. {odd[:3]}; split the series")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers}
    if len(sizes) > 1:
        raise DataError(f"{name}: slices of different sizes {sorted(sizes)}; split the series")
    spacings = {tuple(round(float(v), 4) for v in ds.PixelSpacing) for _, ds in headers}
    if len(spacings) > 1:
        raise DataError(f"{name}: slices with different PixelSpacing {sorted(spacings)}")
    return iops


def _check_stacking(
    files: list[Path], dist: np.ndarray, ipps: np.ndarray, normal: np.ndarray, name: str
) -> None:
    """Sorted slices: no duplicate positions, stacked along their normal, one uniform step."""
    steps = np.diff(dist)
    dup = np.flatnonzero(steps < POSITION_TOL)
    if dup.size:
        i = int(dup[0])
        raise DataError(
            f"{name}: {dup.size} duplicate slice position(s), e.g. {files[i]} and {files[i + 1]} "
            f"at {dist[i]:.3f} mm; remove the duplicates"
        )
    stack = ipps[-1] - ipps[0]
    cos = float(abs(stack @ normal) / np.linalg.norm(stack))
    if cos < TILT_COS_TOL:
        angle = float(np.degrees(np.arccos(min(cos, 1.0))))
        raise DataError(
            f"{name}: gantry tilt of {angle:.1f} degrees (slices are not stacked along their normal); "
            "resample the series to an orthogonal grid first (for example with dcm2niix)"
        )
    median = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - median) > max(SPACING_REL_TOL * median, POSITION_TOL))
    if off.size:
        i = int(off[0])
        kind = "missing slice(s)" if steps[i] > 1.5 * median else "non-uniform slice spacing"
        raise DataError(
            f"{name}: {kind}: step {steps[i]:.3f} mm between {files[i].name} and {files[i + 1].name}, "
            f"while the median step is {median:.3f} mm; {off.size} irregular step(s) in all"
        )


def decode(ds: Any, path: str | Path) -> np.ndarray:
    """Pixel data after the modality LUT (rescale slope and intercept), as float32."""
    from pydicom.pixels import apply_modality_lut

    try:
        arr = ds.pixel_array
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise DataError(
            f"{path}: cannot decode the pixel data (transfer syntax {name}): {err}. The file may be "
            "truncated; compressed data needs pylibjpeg with pylibjpeg-openjpeg / pylibjpeg-libjpeg"
        ) from None
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def read_series(files: list[str | Path], name: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """One checked DICOM series as a volume.

    Args:
        files: the series' files.
        name: how errors name the series (its folder when None).

    Returns:
        (volume float32 (columns, rows, slices), RAS affine, tags: modality, series UID, the
        headers (pixel data dropped) and files in slice order).

    Raises:
        DataError: files that disagree in geometry, missing slices or unreadable pixel data.
    """
    import pydicom

    name = name or str(Path(files[0]).parent)
    datasets = []
    for f in files:
        try:
            datasets.append((Path(f), pydicom.dcmread(f)))
        except Exception as err:
            raise DataError(f"{f}: unreadable DICOM ({type(err).__name__}: {err})") from None
    geom = series_geometry(datasets, name)
    by_path = dict(datasets)
    slices = [decode(by_path[p], p) for p in geom.files]
    volume = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, n) -> (cols, rows, n)
    first = by_path[geom.files[0]]
    headers = tuple(by_path[p] for p in geom.files)
    for ds in headers:  # kept for the SEG and RTSTRUCT of this series, without their pixels
        ds.pop(PIXEL_DATA, None)
    tags = {
        "modality": str(first.get("Modality", "")),
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "n_slices": len(geom.files),
        "headers": headers,
        "files": tuple(geom.files),
    }
    return np.ascontiguousarray(volume), geom.affine, tags


def read_series_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The one image series in ``folder``; a clear error when there are none or several."""
    scan = scan_tree(folder)
    if not scan.series:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in scan.skipped[:5])
        raise DataError(f"{folder}: no DICOM image series found ({reasons or 'empty folder'})")
    if len(scan.series) > 1:
        listing = ", ".join(f"{s.uid} ({len(s.files)} files)" for s in scan.series.values())
        raise DataError(f"{folder}: {len(scan.series)} series found ({listing}); give one folder per series")
    info = next(iter(scan.series.values()))
    return read_series(list(info.files), str(folder))


def folder_geometry(folder: str | Path) -> SliceGeometry:
    """Checked geometry of the one series in ``folder`` from headers only (no pixel decoding)."""
    scan = scan_tree(folder)
    if len(scan.series) != 1:
        read_series_folder(folder)  # raises the clear error
    info = next(iter(scan.series.values()))
    return series_geometry([(Path(f), read_header(f)) for f in info.files], str(folder))
