"""Find what ``medseg predict`` can segment in a folder tree, and what it must skip and why.

Every file under the input folder is looked at once. NIfTI files and PNG/JPEG pictures are inputs
by their suffix; every other file is read as a DICOM header (no pixel data). DICOM images are
grouped by SeriesInstanceUID for 3D models (one input per series, its files in any folders) and
taken one file at a time for 2D models (one input per SOPInstanceUID). For a study trained on an
nnU-Net data set, or on cases of several channel files, files named ``{CASE}_{XXXX}{ending}`` are
the channels of ``CASE`` (numbered 0000, 0001, ... without a gap), as nnU-Net names them. The
pipeline's ``predict`` settings then select: DICOM Modality, axial slices, a least number of
slices. Each input carries its sources, the reader of each chosen here (:mod:`medseg.io.source`).

Names and privacy: a NIfTI or picture input is named by its own path inside the input folder
(``sub/case1.nii.gz`` -> ``sub__case1``; the channels ``imagesTs/la_001_0000.nii.gz`` ... ->
``la_001``, nnU-Net's name), so ``medseg evaluate`` pairs its outputs with references by name; a
DICOM input by its UID (SOPInstanceUID for 2D models, SeriesInstanceUID for 3D), never by
a header value such as PatientName. Every name is made safe (:func:`medseg.io.names.safe_name`)
and fits a file name with its longest suffix (:func:`medseg.io.names.file_stem`, in bytes). The
files of two inputs never share a name: inputs whose names coincide get a hash of their path
(:func:`_unique_keys`), checked over every file each input may write before anything is written.
DICOM file and folder names, which in real exports often hold the patient's name, are never
written: an input's ``ref`` (a hash of its path inside the input folder) stands for them, unless
``medseg predict --log-paths`` asks for the paths.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PredictConfig
from medseg.data.layouts.nnunet import gapped
from medseg.errors import DataError
from medseg.io.dicom import is_image, read_header, walk_files
from medseg.io.names import MAX_STEM_BYTES, digest, file_stem, safe_name, shorten
from medseg.io.privacy import pseudonym
from medseg.io.readers import case_stem, known_suffixes, reader_by_name, reader_of
from medseg.io.source import DICOM_IMAGE, DICOM_SERIES, KINDS, NAMED_BY_PATH, Source

log = logging.getLogger(__name__)
AXIAL_COS = 0.95  # |slice normal . head-foot axis| at least this: within about 18 degrees
# what medseg predict writes beside an input's label map (medseg.infer.outputs), after its key
OUTPUT_TAILS = {
    "overlay": "_overlay.png",
    "seg": "_seg.dcm",
    "rtstruct": "_rtstruct.dcm",
    "probabilities": "_probabilities.nii.gz",
}


@dataclass
class InputItem:
    """One thing to segment (``skip`` is None) or to report as skipped (``skip`` says why).

    Attributes:
        key: the input's identity in the manifest and in output names.
        kind: a reader's kind (``dicom_series``, ``dicom_image``, ``nifti``, ``raster``), or what
            could not be read (``dicom_object``, ``file``).
        files: the files read.
        source: the path inside the input folder (of the first file of a series).
        study_uid: StudyInstanceUID (DICOM).
        series_uid: SeriesInstanceUID (DICOM).
        sop_uid: SOPInstanceUID (single DICOM images).
        modality: the DICOM Modality.
        skip: why the input is not segmented, or None.
        channels: the channel sources, when the input is several files (nnU-Net naming).
    """

    key: str
    kind: str
    files: list[Path] = field(default_factory=list)
    source: str = ""  # path inside the input folder (of the first file of a series)
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    modality: str = ""
    skip: str | None = None
    channels: list[Source] = field(default_factory=list)

    @property
    def is_dicom(self) -> bool:
        return self.kind.startswith("dicom")

    @property
    def sources(self) -> list[Source]:
        """What the reader reads: each channel file, or the one source of the input."""
        return self.channels or [Source(tuple(self.files), self.kind)]

    @property
    def named_by_path(self) -> bool:
        """Whether the input's own path names it (NIfTI and pictures), so it may be shown."""
        return self.kind in NAMED_BY_PATH

    @property
    def ref(self) -> str:
        """A stable stand-in for the input's path: :func:`ref` of its (first file's) path."""
        return ref(self.source) if self.source else ""


def ref(relative: str) -> str:
    """What stands for a path inside the input folder where paths are not shown: ``p`` and a keyed
    hash (:func:`medseg.io.privacy.pseudonym`)."""
    return pseudonym(relative)


def path_key(relative: str) -> str:
    """Output key of a NIfTI or picture input: its path inside the input folder, format suffix
    dropped, folders joined by ``__``, each part made safe, the whole shortened with a hash when it
    would not fit a file name (:func:`~medseg.io.names.file_stem`).

    Example:
        >>> path_key("site A/case 1.nii.gz")
        'site_A__case_1'
    """
    *folders, name = relative.split("/")
    return file_stem("__".join(safe_name(part) for part in (*folders, case_stem(name))))


def hashed_key(relative: str) -> str:
    """Output key of a file with neither a UID nor a format suffix: a keyed hash of its path."""
    return "f" + pseudonym(relative, 16)[1:]


def discover(
    root: Path, spatial_dims: int, rules: PredictConfig, channel_files: bool = False
) -> list[InputItem]:
    """What ``medseg predict`` segments under ``root``, and what it skips and why.

    Args:
        root: the input folder tree.
        spatial_dims: 2 or 3, the model's.
        rules: the study's ``predict`` selection rules (modalities, orientation, slices).
        channel_files: inputs are ``{CASE}_{XXXX}{ending}`` channel files (nnU-Net naming).

    Returns:
        Inputs and skipped files in a stable order (sorted paths, then UIDs).

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: input folder not found")
    dims = spatial_dims
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
                key, DICOM_SERIES, [], rel, study_uid=item.study_uid, series_uid=item.series_uid,
                modality=item.modality,
            )  # fmt: skip
            first_header[group] = ds
        series[group].files.append(path)
    for group, entry in series.items():
        entry.skip = _series_rule(entry, first_header[group], rules)
        items.append(entry)
    for item in items:
        if item.skip is None and item.kind == DICOM_IMAGE:
            item.skip = _modality_rule(item.modality, rules)
    if channel_files:
        items = group_channels(items)
    _unique_keys(items)
    return items


CHANNEL_FILE = re.compile(r"(.+)_(\d{4})")


def _channel_of(item: InputItem) -> tuple[str, int, str] | None:
    """(case path without channel, channel number, ending) of a ``{CASE}_{XXXX}{ending}`` file."""
    if item.kind not in NAMED_BY_PATH:
        return None
    ending = next((e for e in known_suffixes() if item.source.lower().endswith(e)), "")
    match = CHANNEL_FILE.fullmatch(item.source[: len(item.source) - len(ending)])
    return (
        (match.group(1), int(match.group(2)), item.source[len(item.source) - len(ending) :])
        if match
        else None
    )


def group_channels(items: list[InputItem]) -> list[InputItem]:
    """NIfTI and picture files named ``{CASE}_{XXXX}{ending}`` joined into one input per case,
    named ``CASE`` (channels numbered from 0000 without a gap, else the case is skipped with why).

    Example:
        >>> files = ["a_0001.nii.gz", "a_0000.nii.gz", "b_0000.png"]
        >>> items = [InputItem(path_key(f), "nifti", [Path(f)], f) for f in files]
        >>> [(i.key, len(i.channels)) for i in group_channels(items)]
        [('a', 2), ('b', 1)]
    """
    groups: dict[tuple[str, str], list[tuple[int, InputItem]]] = {}
    out: list[InputItem] = []
    for item in items:
        parsed = _channel_of(item) if item.skip is None else None
        if parsed is None:
            out.append(item)
            continue
        groups.setdefault((parsed[0], parsed[2]), []).append((parsed[1], item))
    for (case, ending), members in groups.items():
        members.sort(key=lambda m: m[0])
        first = members[0][1]
        files = [f for _, m in members for f in m.files]
        joined = InputItem(path_key(case + ending), first.kind, files, first.source)
        joined.channels = [Source(tuple(m.files), m.kind) for _, m in members]
        numbers = [n for n, _ in members]
        if numbers != list(range(len(members))):
            joined.skip = gapped(numbers)
        out.append(joined)
    return out


def _dicom_item(path: Path, rel: str) -> tuple[InputItem, Any]:
    try:
        ds = read_header(path)
    except DataError as err:
        return InputItem(hashed_key(rel), "file", [path], rel, skip=str(err).removeprefix(f"{path}: ")), None
    uids: dict[str, Any] = {
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
    return InputItem(key, DICOM_IMAGE, [path], rel, **uids, skip=reason), ds


def _modality_rule(modality: str, rules: PredictConfig) -> str | None:
    wanted = rules.modalities
    if wanted is not None and modality not in {m.upper() for m in wanted}:
        return f"Modality {modality or 'missing'}; this model takes {', '.join(wanted)} (predict.modalities)"
    return None


def _series_rule(item: InputItem, first: Any, rules: PredictConfig) -> str | None:
    reason = _modality_rule(item.modality, rules)
    if reason:
        return reason
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


def output_names(key: str, kind: str) -> list[str]:
    """Every file ``medseg predict`` may write for an input named ``key`` of reader kind ``kind``:
    its label map (:meth:`~medseg.io.readers.Reader.label_name`) and each of :data:`OUTPUT_TAILS`.

    Example:
        >>> output_names("x", "raster")
        ['x.png', 'x_overlay.png', 'x_seg.dcm', 'x_rtstruct.dcm', 'x_probabilities.nii.gz']
    """
    mask = reader_of(kind).label_name(key) if kind in KINDS else f"{key}.nii.gz"
    return [mask, *(key + tail for tail in OUTPUT_TAILS.values())]


def _unique_keys(items: list[InputItem]) -> None:
    """Give every input a key whose files no other input writes, checked before anything is written.

    A key stays the input's own name unless another input has it too (letter case ignored, for
    case-blind file systems: ``a.jpg`` and ``a.png``, ``a/b.png`` and ``a__b.png``, copies of one
    SOPInstanceUID) or its label map would be named as another input's extra file (``x_overlay.jpg``
    -> ``x_overlay.png``, the overlay of ``x.jpg``). Those inputs, every one of them, take ``-`` and
    a hash of their own path (:func:`_path_hash`), so which input gets which name never depends on
    the order of the listing. Then every name of every input is checked against all the others.

    Raises:
        DataError: two inputs would still write one file (a hash colliding with a real name).
    """
    counts = Counter(item.key.casefold() for item in items)
    marked = [i for i in items if counts[i.key.casefold()] > 1 or _looks_derived(i.key, i.kind)]
    renamed = {id(i) for i in marked}
    taken: dict[str, InputItem] = {}
    for item in [i for i in items if id(i) not in renamed] + marked:
        if id(item) in renamed:
            item.key = _free_key(item, taken)
        for name in output_names(item.key, item.kind):
            other = taken.setdefault(name.casefold(), item)
            if other is not item:
                raise DataError(
                    f"inputs {_shown(other)} and {_shown(item)} would both write {name}; rename one"
                )
    if marked:
        log.warning(
            "%d input(s) share a name with another input, or are named as another input's extra file, "
            "and are named with a hash of their path: %s",
            len(marked),
            ", ".join(f"{_shown(i)} -> {i.key}" for i in marked[:20]),
        )


def _looks_derived(key: str, kind: str) -> bool:
    """Whether the label map of ``key`` would be named as another input's extra file."""
    mask = output_names(key, kind)[0].casefold()
    return any(mask.endswith(tail) and len(mask) > len(tail) for tail in OUTPUT_TAILS.values())


def _free_key(item: InputItem, taken: dict[str, InputItem]) -> str:
    """``key-HASH``: the first length of :func:`_path_hash` whose names are all free."""
    for n in (8, 16, 40):
        tail = "-" + _path_hash(item, n)
        key = shorten(item.key, MAX_STEM_BYTES - len(tail)) + tail
        names = output_names(key, item.kind)
        if not _looks_derived(key, item.kind) and all(name.casefold() not in taken for name in names):
            return key
    raise DataError(f"input {_shown(item)}: no free output name; rename it")


def _path_hash(item: InputItem, n: int) -> str:
    """A hash of the input's path inside the input folder: a plain one for NIfTI and pictures, whose
    paths are shown anyway; the keyed pseudonym for DICOM files, whose paths may name the patient."""
    if item.named_by_path:
        return digest(item.source, n)
    return pseudonym(item.source, n)[1:]


def _shown(item: InputItem) -> str:
    """An input as a message may name it: its path for NIfTI and pictures, else its key."""
    return item.source if item.named_by_path else item.key
