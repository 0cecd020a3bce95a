"""An image as stored, with its format chosen once, and what reading it learned.

A :class:`Source` is one stored image: a file, a DICOM series (its folder, or the files discovery
grouped by SeriesInstanceUID) or a DICOM image, with the ``kind`` of the reader that reads it
(:mod:`medseg.io.readers`), decided once where the input is found and carried with it from then
on; DICOM headers read at discovery travel with it, so a series' headers are parsed once per
``medseg predict``. A case has one source per channel file (:class:`medseg.io.case.Case`).

:class:`Properties` is what a reader returns beside the array, as nnU-Net's readers return their
properties dict: the geometry (spacing, canonical and stored affines and shapes), the modality,
laterality, channels and the source's DICOM headers. The writers take them back to write a result
on the input's own grid and in its format family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Reader kinds, one name each everywhere (manifests, messages, datalist.json).
RASTER, NIFTI, DICOM_SERIES, DICOM_IMAGE, DICOM_SEG = (
    "raster",
    "nifti",
    "dicom_series",
    "dicom_image",
    "dicom_seg",
)
KINDS = (RASTER, NIFTI, DICOM_SERIES, DICOM_IMAGE, DICOM_SEG)
NAMED_BY_PATH = (RASTER, NIFTI)  # inputs whose own path names them (and may be shown)


@dataclass(frozen=True)
class Source:
    """One stored image and the kind of the reader that reads it.

    Attributes:
        files: one file, a DICOM series folder, or the files of one DICOM series.
        kind: the reader's kind (:data:`KINDS`).
        headers: DICOM headers (no pixel data) of ``files`` read at discovery, or empty.

    Example:
        >>> Source.one("scans/a.nii.gz", "nifti").path, Source.one("scans/a.nii.gz", "nifti").shown
        (PosixPath('scans/a.nii.gz'), 'scans/a.nii.gz')
    """

    files: tuple[Path, ...]
    kind: str
    headers: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def one(cls, path: str | Path, kind: str) -> Source:
        return cls((Path(path),), kind)

    @property
    def path(self) -> Path:
        """The file or folder (the first file of a series given as files)."""
        return self.files[0]

    @property
    def shown(self) -> str:
        """How messages name it: the path, or the first file and how many follow."""
        more = f" (+{len(self.files) - 1} files)" if len(self.files) > 1 else ""
        return f"{self.path}{more}"

    @property
    def named_by_path(self) -> bool:
        return self.kind in NAMED_BY_PATH

    def to_json(self) -> dict[str, Any]:
        """``{"kind", "path"}`` (or ``"files"`` for a series given as files); headers stay out."""
        if len(self.files) == 1:
            return {"kind": self.kind, "path": str(self.path)}
        return {"kind": self.kind, "files": [str(f) for f in self.files]}

    @classmethod
    def from_json(cls, value: Any) -> Source:
        files = value["files"] if "files" in value else [value["path"]]
        return cls(tuple(Path(f) for f in files), str(value["kind"]))


@dataclass
class Properties:
    """What reading an image learned, enough to write a result back onto its grid.

    Attributes:
        kind: the reader's kind.
        spacing: voxel size per spatial axis, mm (pixels when ``pixels``).
        affine: the RAS affine of the array as read: canonical for volumes, ``diag(spacing)`` for 2D.
        source_shape: the spatial shape as stored.
        source_affine: the stored grid's affine (volumes; 2D NIfTI: the file's own), else None.
        pixels: the spacing is in pixels (pictures, DICOM without a pixel spacing).
        laterality: ``L``, ``R`` or empty (mammography).
        modality: DICOM Modality, ``RGB``/``grey`` for pictures, empty when the file does not say.
        channels: channels of the array as read.
        headers: DICOM headers of the source (no pixel data), for SEG and RTSTRUCT.
    """

    kind: str
    spacing: tuple[float, ...]
    affine: np.ndarray
    source_shape: tuple[int, ...]
    source_affine: np.ndarray | None = None
    pixels: bool = False
    laterality: str = ""
    modality: str = ""
    channels: int = 1
    headers: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def spatial_dims(self) -> int:
        return len(self.source_shape)

    def volume_unit(self) -> tuple[str, float]:
        """The unit of a label's volumes and its factor from the voxel size: ``px`` for pictures,
        ``mL`` for volumes, ``mm2`` for 2D images with a physical spacing.

        Example:
            >>> Properties("raster", (1.0, 1.0), np.eye(4), (4, 4), pixels=True).volume_unit()
            ('px', 1.0)
        """
        if self.pixels:
            return "px", 1.0
        return ("mL", 1e-3) if self.spatial_dims == 3 else ("mm2", 1.0)

    def label_affine(self) -> np.ndarray:
        """The NIfTI affine of a label written on the stored grid: the stored affine (volumes, and
        2D NIfTI files), else (column, row) spacing for a 2D label stored as (x = column, y = row)."""
        if self.source_affine is not None:
            return np.asarray(self.source_affine, dtype=float)
        row, col = (float(s) for s in self.spacing[:2])
        return np.diag([col, row, 1.0, 1.0])

    def meta(self) -> dict[str, Any]:
        """The MetaTensor meta data of the array (plain values only, so batches collate)."""
        meta: dict[str, Any] = {
            "spacing": np.asarray(self.spacing, dtype=np.float64),
            "laterality": self.laterality,
            "source_shape": tuple(self.source_shape),
            "kind": self.kind,
        }
        if self.spatial_dims == 3 and self.source_affine is not None:
            meta["source_affine"] = self.source_affine
        return meta
