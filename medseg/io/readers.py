"""The reader registry: one class per file format, one list of them, one suffix table.

Every stage that reads or writes images goes through here: ingest (the transform loader), the
checks of ``medseg run``, ``medseg evaluate``, ``medseg predict``'s discovery and its outputs.
A reader says which paths are its own (:meth:`Reader.matches`: a suffix, a folder, or a DICOM
header) and reads them as

- 2D images, (rows, columns[, channels]) with a (row, column) ``spacing``: PNG/JPEG/TIFF/BMP as
  stored with spacing 1 (pixels), DICOM as in :mod:`medseg.io.dicom_image`, 2D NIfTI transposed from
  NIfTI's (x = column, y = row) order;
- 3D volumes in the canonical RAS+ frame (:mod:`medseg.io.geometry`), with the stored grid's
  ``source_affine`` and ``source_shape`` in the tags;
- masks (:class:`Mask`), 2D or 3D as the file holds them; a DICOM SEG covers only its frames.

Adding a format is adding one class to :data:`READERS`.

Example:
    >>> reader_for("scans/case_01.nii.gz").kind
    'nifti'
    >>> source_of("scans/case_01.nii.gz")
    Source(files=(PosixPath('scans/case_01.nii.gz'),), kind='nifti')
    >>> reader_for("pictures/IMD002.JPG").kind, case_stem("IMD002_seg.png")
    ('raster', 'IMD002_seg')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medseg.errors import DataError
from medseg.io import dicom, dicom_image, dicom_seg, nifti, raster, source
from medseg.io.geometry import canonical_geometry, canonical_volume
from medseg.io.source import Properties, Source

Image2D = tuple[np.ndarray, dict[str, Any]]
Volume = tuple[np.ndarray, np.ndarray, dict[str, Any]]
Geometry = tuple[tuple[int, ...], np.ndarray]


@dataclass
class Mask:
    """A label map as read for scoring.

    Attributes:
        array: the label values.
        spacing: voxel size in mm, or None for pictures with no physical spacing.
        affine: the canonical RAS affine of 3D masks, else None.
        partial: a DICOM SEG covering only its non-empty frames.
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None  # None: pixels (no physical spacing in the file)
    affine: np.ndarray | None  # canonical RAS affine of 3D masks
    partial: bool = False  # a DICOM SEG covering only its non-empty frames


class Reader:
    """One file format; adding a format is adding one subclass to ``READERS``.

    Subclasses set their class attributes and override the methods their format supports; the base
    methods refuse with a message that names the file.

    Attributes:
        kind: the name used in manifests and messages.
        suffixes: the file name endings of the format, lower case.
        by_suffix: whether a suffix alone decides the format (else the reader detects it).
        pictures: whether the format holds 2D pictures (RGB or grey) rather than volumes.
    """

    kind: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    # known by its suffix alone, without opening the file (NIfTI, pictures; not DICOM)
    by_suffix: ClassVar[bool] = False
    # 2D pictures only (no volumes)
    pictures: ClassVar[bool] = False

    def matches(self, path: Path) -> bool:
        return path.name.lower().endswith(self.suffixes)

    def read_2d(self, path: Path, voi_lut: bool = False, channels: int | None = None) -> Image2D:
        raise DataError(f"{path}: a {self.kind} input cannot be a 2D image; give single image files")

    def read_3d(self, path: Path) -> Volume:
        """(array, affine, tags) on the grid as stored; :func:`read_volume` makes it canonical."""
        raise DataError(f"{path}: a 2D picture cannot be a 3D volume; use NIfTI or a DICOM series folder")

    def geometry(self, path: Path) -> Geometry:
        """(shape, affine) of the stored grid from headers only."""
        raise DataError(f"{path}: a 2D picture cannot be a 3D volume; use NIfTI or a DICOM series folder")

    def is_3d(self, path: Path) -> bool:
        return False

    def read_source_3d(self, src: Source) -> Volume:
        """(array, affine, tags) of a source on the grid as stored."""
        return self.read_3d(src.path)

    def label_name(self, key: str) -> str:
        """The file name of a label map written for an input named ``key``: NIfTI (pictures: PNG)."""
        return f"{key}.nii.gz"

    def write_label(self, path: Path, label: np.ndarray, props: Properties, binary: bool) -> None:
        """Write ``label`` (on the stored grid: (rows, columns) in 2D) as NIfTI on the input's own
        grid, the stored affine (2D: stored as NIfTI's (x = column, y = row)). Pictures: PNG."""
        stored = label.T.copy() if label.ndim == 2 else label
        nifti.write_nifti(path, stored.astype(np.uint8), props.label_affine())

    def read_mask(self, path: Path) -> Mask:
        if self.is_3d(path):
            array, affine, tags = read_volume(path)
            if array.ndim != 3:
                raise DataError(f"{path}: shape {array.shape}; a mask needs one channel")
            return Mask(array, tuple(tags["spacing"]), affine)
        array, tags = self.read_2d(path)
        if array.ndim != 2:
            raise DataError(f"{path}: {array.shape[2]} channels; save masks as single-channel images")
        spacing = None if tags.get("spacing_source") == "pixel" else tuple(tags["spacing"])
        return Mask(array, spacing, None)


class RasterReader(Reader):
    """PNG, JPEG, TIFF and BMP pictures with Pillow; written as PNG."""

    kind = source.RASTER
    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
    by_suffix = True
    pictures = True

    def read_2d(self, path: Path, voi_lut: bool = False, channels: int | None = None) -> Image2D:
        return raster.read_raster(path, channels), {
            "spacing": (1.0, 1.0),
            "spacing_source": "pixel",
            "laterality": None,
        }

    @staticmethod
    def write(path: Path, array: np.ndarray) -> None:
        raster.write_png(path, array)

    def label_name(self, key: str) -> str:
        return f"{key}.png"

    def write_label(self, path: Path, label: np.ndarray, props: Properties, binary: bool) -> None:
        """A PNG: 0/255 for one class (``binary``), class values otherwise."""
        raster.write_png(path, label.astype(np.uint8) * np.uint8(255 if binary else 1))


class NiftiReader(Reader):
    """NIfTI-1/2 with nibabel, gzipped or not; 2D files are (x = column, y = row)."""

    kind = source.NIFTI
    suffixes = (".nii.gz", ".nii")
    by_suffix = True

    def is_3d(self, path: Path) -> bool:
        return len([s for s in nifti.nifti_shape(path) if s != 1]) >= 3

    def read_2d(self, path: Path, voi_lut: bool = False, channels: int | None = None) -> Image2D:
        array, affine = nifti.nifti_array(path)
        while array.ndim > 2 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise DataError(f"{path}: shape {array.shape}; a 2D workflow needs a 2D image")
        spacing = np.linalg.norm(affine[:3, :2], axis=0)
        tags = {"spacing": (float(spacing[1]), float(spacing[0])), "laterality": None, "file_affine": affine}
        return array.T.copy(), tags

    def read_3d(self, path: Path) -> Volume:
        array, affine = nifti.nifti_array(path)
        while array.ndim > 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim > 4:
            raise DataError(f"{path}: {array.ndim}D data; expected a 3D volume (with channels last)")
        return array, affine, {}

    def geometry(self, path: Path) -> Geometry:
        return nifti.nifti_shape(path), np.asarray(nifti.load_nifti(path).affine, dtype=float)

    @staticmethod
    def write(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
        nifti.write_nifti(path, array, affine)


class DicomSeriesReader(Reader):
    """A folder holding one DICOM image series (or the file list of one series)."""

    kind = source.DICOM_SERIES

    def matches(self, path: Path) -> bool:
        return path.is_dir()

    def is_3d(self, path: Path) -> bool:
        return True

    def read_3d(self, path: Path) -> Volume:
        return dicom.read_series_folder(path)

    def read_source_3d(self, src: Source) -> Volume:
        if len(src.files) == 1 and src.path.is_dir():
            return dicom.read_series_folder(src.path)
        return dicom.read_series(list(src.files))

    def geometry(self, path: Path) -> Geometry:
        geom = dicom.folder_geometry(path)
        return geom.shape, geom.affine


class DicomSegReader(Reader):
    """DICOM Segmentation objects with highdicom: read onto the canonical grid, written from a label."""

    kind = source.DICOM_SEG
    suffixes = (".dcm",)

    def matches(self, path: Path) -> bool:
        return path.is_file() and reader_by_name(path) is None and dicom_seg.is_seg(path)

    def read_mask(self, path: Path) -> Mask:
        array, affine = dicom_seg.read_seg(path)
        return Mask(array, tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)), affine, True)

    @staticmethod
    def write_series(
        label: np.ndarray, affine: np.ndarray, files: list[Path], path: Path, segments: dicom_seg.Segments
    ) -> Path:
        """A SEG of ``label`` (canonical grid) referencing the DICOM series made of ``files``."""
        return dicom_seg.write_seg(label, affine, files, path, segments)

    @staticmethod
    def write_image(label: np.ndarray, source: Path, path: Path, segments: dicom_seg.Segments) -> Path:
        """A SEG of a 2D ``label`` (rows, columns) referencing the DICOM image ``source``."""
        return dicom_seg.write_seg_image(label, source, path, segments)


class DicomImageReader(Reader):
    """Any other file, read as DICOM (by its DICM preamble): a 2D image, or a one-slice volume."""

    kind = source.DICOM_IMAGE
    suffixes = (".dcm",)

    def matches(self, path: Path) -> bool:
        if not path.exists():
            raise DataError(f"{path}: file not found")
        return True

    def read_2d(self, path: Path, voi_lut: bool = False, channels: int | None = None) -> Image2D:
        return dicom_image.read_dicom_image(path, voi_lut)

    def read_3d(self, path: Path) -> Volume:
        return dicom.read_series([path])

    def geometry(self, path: Path) -> Geometry:
        geom = dicom.series_geometry([(path, dicom.read_header(path))], str(path))
        return geom.shape, geom.affine


RASTER, NIFTI, DICOM_SERIES, DICOM_SEG, DICOM_IMAGE = (
    RasterReader(),
    NiftiReader(),
    DicomSeriesReader(),
    DicomSegReader(),
    DicomImageReader(),
)
# Tried in order: folders, formats known by suffix, then DICOM objects by their header.
READERS: list[Reader] = [DICOM_SERIES, NIFTI, RASTER, DICOM_SEG, DICOM_IMAGE]


def known_suffixes() -> tuple[str, ...]:
    """Every suffix a file the readers take may have, longest first (".nii.gz" before ".nii")."""
    return tuple(sorted({s for r in READERS for s in r.suffixes}, key=lambda s: (-len(s), s)))


def reader_for(path: str | Path) -> Reader:
    """The reader of a file or folder.

    Args:
        path: a file or a folder (a DICOM series).

    Returns:
        The reader named by its suffix, or detected from its contents.

    Raises:
        DataError: the path does not exist and no suffix names it.
    """
    p = Path(path)
    for reader in READERS:
        if reader.matches(p):
            return reader
    raise DataError(f"{p}: no reader for this file")  # unreachable: DICOM_IMAGE takes the rest


def reader_by_name(path: str | Path) -> Reader | None:
    """The reader a file's suffix names (NIfTI, pictures), without opening it; None otherwise."""
    name = Path(path).name.lower()
    return next((r for r in READERS if r.by_suffix and name.endswith(r.suffixes)), None)


def case_stem(name: str) -> str:
    """A file name without the suffix of its format (``a.nii.gz`` -> ``a``); unchanged otherwise."""
    ext = next((e for e in known_suffixes() if name.lower().endswith(e)), "")
    return name[: len(name) - len(ext)]


def read_volume(path: str | Path | list[str]) -> Volume:
    """A 3D volume in the canonical frame.

    Args:
        path: a NIfTI file, a DICOM series folder or SEG, or the list of files of one series.

    Returns:
        (array (x, y, z[, c]), RAS affine, tags); ``tags`` hold ``spacing`` and the
        ``source_affine`` and ``source_shape`` of the grid as stored, to write results back onto it.

    Raises:
        DataError: the path cannot be read, or holds a 2D picture.
    """
    if isinstance(path, list | tuple):
        return canonical_volume(*dicom.read_series(list(path)))
    return canonical_volume(*reader_for(path).read_3d(Path(path)))


def volume_geometry(path: str | Path) -> Geometry:
    """Canonical (shape, affine) from headers only: no voxel data is decoded."""
    shape, affine = reader_for(path).geometry(Path(path))
    if len(shape) == 2:
        shape = (*shape, 1)
    return canonical_geometry(shape, affine)


def read_image2d(path: str | Path, voi_lut: bool = False, channels: int | None = None) -> Image2D:
    """A 2D image for the 2D workflows.

    Args:
        path: a raster picture or a single-frame DICOM image.
        voi_lut: apply a DICOM file's VOI LUT or window.
        channels: the channels a model takes: pictures are converted where the meaning is clear
            (:func:`medseg.io.raster.read_raster`); None reads them as stored.

    Returns:
        (array (rows, columns[, channels]), tags with ``spacing``).

    Raises:
        DataError: the path cannot be read, or holds a volume.
    """
    return reader_for(path).read_2d(Path(path), voi_lut, channels)


def read_mask(path: str | Path) -> Mask:
    """A mask file, folder or DICOM SEG as its format holds it.

    Args:
        path: the mask.

    Returns:
        The mask's array, and its affine where the format has one.

    Raises:
        DataError: the path cannot be read, or a picture has several channels.
    """
    return reader_for(path).read_mask(Path(path))


def reader_of(kind: str) -> Reader:
    """The reader of a kind (:data:`medseg.io.source.KINDS`).

    Raises:
        DataError: no reader has this kind.
    """
    for reader in READERS:
        if reader.kind == kind:
            return reader
    raise DataError(f"no reader of kind '{kind}'; known: {', '.join(r.kind for r in READERS)}")


def source_of(path: str | Path) -> Source:
    """A file or folder as a :class:`Source`, its reader chosen now (by suffix, or by the DICOM
    header for other files)."""
    return Source.one(path, reader_for(path).kind)
