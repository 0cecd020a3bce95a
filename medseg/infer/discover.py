"""Find what ``medseg predict`` can segment in a folder tree, and what it must skip and why.

Every file under the input folder is looked at once. NIfTI files and PNG/JPEG pictures are inputs
by their suffix; every other file is read as a DICOM header (no pixel data). DICOM images are
grouped by SeriesInstanceUID for 3D models (one input per series, its files in any folders) and
taken one file at a time for 2D models (one input per SOPInstanceUID). The pipeline's ``predict``
settings then select: DICOM Modality, axial slices, a least number of slices.

Names and privacy: a NIfTI or picture input is named by its own path inside the input folder
(``sub/case1.nii.gz`` -> ``sub__case1``), so ``medseg evaluate`` pairs its outputs with references
by name; a DICOM input by its UID (SOPInstanceUID for 2D models, SeriesInstanceUID for 3D), never by
a header value such as PatientName. Every name is made safe (:func:`medseg.io.names.safe_name`).
DICOM file and folder names, which in real exports often hold the patient's name, are never
written: an input's ``ref`` (a hash of its path inside the input folder) stands for them, unless
``medseg predict --log-paths`` asks for the paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.errors import DataError
from medseg.io.dicom import is_image, read_header, walk_files
from medseg.io.names import safe_name
from medseg.io.privacy import pseudonym
from medseg.io.readers import case_stem, reader_by_name

AXIAL_COS = 0.95  # |slice normal . head-foot axis| at least this: within about 18 degrees


@dataclass
class InputItem:
    """One thing to segment (``skip`` is None) or to report as skipped (``skip`` says why).

    Attributes:
        key: the input's identity in the manifest and in output names.
        kind: ``dicom_series``, ``dicom_image``, ``nifti``, ``raster`` or ``file``.
        files: the files read.
        source: the path inside the input folder (of the first file of a series).
        study_uid: StudyInstanceUID (DICOM).
        series_uid: SeriesInstanceUID (DICOM).
        sop_uid: SOPInstanceUID (single DICOM images).
        modality: the DICOM Modality.
        skip: why the input is not segmented, or None.
    """

    key: str
    kind: str  # dicom_series | dicom_image | nifti | raster | file
    files: list[Path] = field(default_factory=list)
    source: str = ""  # path inside the input folder (of the first file of a series)
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    modality: str = ""
    skip: str | None = None

    @property
    def is_dicom(self) -> bool:
        return self.kind.startswith("dicom")

    @property
    def named_by_path(self) -> bool:
        """Whether the input's own path names it (NIfTI and pictures), so it may be shown."""
        return self.kind in NAMED_BY_PATH

    @property
    def ref(self) -> str:
        """A stable stand-in for the input's path: :func:`ref` of its (first file's) path."""
        return ref(self.source) if self.source else ""


NAMED_BY_PATH = ("nifti", "raster")


def ref(relative: str) -> str:
    """What stands for a path inside the input folder where paths are not shown: ``p`` and a keyed
    hash (:func:`medseg.io.privacy.pseudonym`)."""
    return pseudonym(relative)


def path_key(relative: str) -> str:
    """Output key of a NIfTI or picture input: its path inside the input folder, format suffix
    dropped, folders joined by ``__``, each part made safe.

    Example:
        >>> path_key("site A/case 1.nii.gz")
        'site_A__case_1'
    """
    *folders, name = relative.split("/")
    return "__".join(safe_name(part) for part in (*folders, case_stem(name)))


def hashed_key(relative: str) -> str:
    """Output key of a file with neither a UID nor a format suffix: a keyed hash of its path."""
    return "f" + pseudonym(relative, 16)[1:]


def discover(root: Path, cfg: PipelineConfig) -> list[InputItem]:
    """What ``medseg predict`` segments under ``root``, and what it skips and why.

    Args:
        root: the input folder tree.
        cfg: the study's configuration (2D or 3D, the ``predict`` selection rules).

    Returns:
        Inputs and skipped files in a stable order (sorted paths, then UIDs).

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: input folder not found")
    dims = cfg.transforms.spatial_dims
    items: list[InputItem] = []
    series: dict[str, InputItem] = {}
    first_header: dict[str, Any] = {}
    for path in sorted(walk_files(root)):
        rel = path.relative_to(root).as_posix()
        by_name = reader_by_name(path)
        if by_name is not None:
            skip = "a 2D picture; this model segments 3D volumes" if by_name.pictures and dims == 3 else None
            items.append(InputItem(path_key(rel), by_name.kind, [path], rel, skip=skip))
            continue
        item, ds = _dicom_item(path, rel)
        if item.skip is not None or dims == 2:
            items.append(item)
            continue
        # anonymised files sometimes lack the UID: group those by folder and SeriesNumber
        group = item.series_uid or f"{path.parent}#{ds.get('SeriesNumber', '')}"
        if group not in series:
            key = safe_name(item.series_uid) if item.series_uid else "s" + pseudonym(group, 16)[1:]
            series[group] = InputItem(
                key, "dicom_series", [], rel, study_uid=item.study_uid, series_uid=item.series_uid,
                modality=item.modality,
            )  # fmt: skip
            first_header[group] = ds
        series[group].files.append(path)
    for group, entry in series.items():
        entry.skip = _series_rule(entry, first_header[group], cfg)
        items.append(entry)
    for item in items:
        if item.skip is None and item.kind == "dicom_image":
            item.skip = _modality_rule(item.modality, cfg)
    _unique_keys(items)
    return items


def _dicom_item(path: Path, rel: str) -> tuple[InputItem, Any]:
    try:
        ds = read_header(path)
    except DataError as err:
        return InputItem(hashed_key(rel), "file", [path], rel, skip=str(err).removeprefix(f"{path}: ")), None
    uids = {
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "modality": str(ds.get("Modality", "")).upper(),
    }
    key = safe_name(uids["sop_uid"]) if uids["sop_uid"] else hashed_key(rel)
    reason = is_image(ds)
    if reason is not None:
        return InputItem(key, "dicom_object", [path], rel, **uids, skip=reason), ds
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        reason = "multi-frame DICOM; convert it to NIfTI"
    return InputItem(key, "dicom_image", [path], rel, **uids, skip=reason), ds


def _modality_rule(modality: str, cfg: PipelineConfig) -> str | None:
    wanted = cfg.predict.modalities
    if wanted is not None and modality not in {m.upper() for m in wanted}:
        return f"Modality {modality or 'missing'}; this model takes {', '.join(wanted)} (predict.modalities)"
    return None


def _series_rule(item: InputItem, first: Any, cfg: PipelineConfig) -> str | None:
    reason = _modality_rule(item.modality, cfg)
    if reason:
        return reason
    rules = cfg.predict
    if len(item.files) < rules.min_slices:
        return f"{len(item.files)} slice(s); predict.min_slices is {rules.min_slices}"
    if rules.orientation == "axial":
        iop = first.get("ImageOrientationPatient")
        if iop is None:
            return "no ImageOrientationPatient; cannot tell whether the slices are axial"
        normal = np.cross([float(v) for v in iop[:3]], [float(v) for v in iop[3:]])
        if abs(float(normal[2])) < AXIAL_COS:
            return "slices are not axial (predict.orientation: axial)"
    return None


def _unique_keys(items: list[InputItem]) -> None:
    """Inputs whose names coincide (copies of one SOPInstanceUID, ``a/b.png`` and ``a__b.png``,
    names that differ only in letter case on a case-blind file system) get distinct ones."""
    seen: dict[str, int] = {}
    for item in items:
        folded = item.key.casefold()
        n = seen.get(folded, 0)
        seen[folded] = n + 1
        if n:
            item.key = f"{item.key}-{n + 1}"
