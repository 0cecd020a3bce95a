"""What ``medseg predict`` writes for one input, all named by the input's key (its own path for
NIfTI and pictures, its UID for DICOM; made safe, and never a path outside the output folder):

- ``<key>.nii.gz``: the label map on the grid of the input as stored (DICOM series: the series'
  voxel order and affine; NIfTI: the file's own affine; 2D DICOM: (columns, rows) with the pixel
  spacing, as medseg and nibabel read 2D NIfTI), or ``<key>.png`` for PNG/JPEG inputs (0/255 for
  one class, class values otherwise);
- ``<key>_seg.dcm``: a DICOM SEG referencing the source series or image (``predict.write_seg``);
- ``<key>_rtstruct.dcm``: an RT Structure Set of a DICOM series (``predict.write_rtstruct``);
- ``<key>_overlay.png``: for 2D inputs, the picture with the predicted outline (``predict.overlays``);
- ``<key>_probabilities.nii.gz``: the mean class probabilities, classes on the last axis
  (``predict.write_probabilities``), every class of the model; 3D on the input's canonical RAS
  grid; 2D laid out as the label map beside it, so ``probs[i, j, k]`` belongs to ``mask[i, j]``:
  (rows, columns, class) as the PNG of a picture, (x = column, y = row, class) with the label
  NIfTI's affine for 2D NIfTI and DICOM;
- ``<key>_statistics.json``: per class the voxels, volume and intensities of the image as read
  (``predict.statistics``, :mod:`medseg.infer.findings`).

With ``predict.classes``, only those classes are written (the label map, SEG, RTSTRUCT, overlay and
statistics); the others become background.

Every file is written to a temporary name and renamed, so a killed batch leaves no partial file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.config.models import LabelCode, PipelineConfig, PredictConfig
from medseg.errors import MedsegError
from medseg.infer.discover import OUTPUT_TAILS, InputItem
from medseg.io import dicom_seg
from medseg.io.atomic import write_json
from medseg.io.dicom_seg import Segments
from medseg.io.names import inside
from medseg.io.nifti import write_nifti
from medseg.io.overlay import draw_overlay
from medseg.io.raster import write_png
from medseg.io.readers import reader_of
from medseg.io.rtstruct import write_rtstruct
from medseg.io.segment_codes import LEFT, PALETTE, RIGHT, SegmentCode, segment_code
from medseg.io.source import DICOM_SERIES, RASTER, Properties

OVERLAY_MAX_SIZE = 1024  # longer side of overlay pictures, in pixels
# the name endings of what is written beside each label map (never a label map of its own)
SIDE_FILES = ("_overlay.png", "_seg.dcm", "_rtstruct.dcm", "_probabilities.nii.gz", "_statistics.json")


Job = tuple[str, str, Callable[[Path], object]]  # (kind, file name, writer)


def write_outputs(
    item: InputItem,
    label: np.ndarray,
    source: dict[str, Any],
    props: Properties,
    rules: PredictConfig,
    binary: bool,
    out_dir: Path,
    segments: Segments,
) -> tuple[dict[str, str], str]:
    """Write the outputs of one input from its label map on the source grid.

    When the mask or overlay cannot be written, the files this call created are removed before the
    error goes on, so an input has all its files or none. A DICOM SEG that cannot be built (a source
    lacking what a SEG must reference) is left out with the reason in the note; the mask stays.

    Args:
        item: the input (its kind, paths and UIDs).
        label: integer label map on the source grid.
        source: ``picture`` (2D overlays), ``probabilities``, ``statistics`` and, for the DICOM SEG
            of a series, ``canonical_label`` and ``canonical_affine``.
        props: what the input's reader learned (its grid, format and DICOM headers).
        rules: the study's ``predict`` settings (which outputs).
        binary: one foreground class (pictures are written 0/255).
        out_dir: the output folder.
        segments: what the DICOM SEG says of its segments and algorithm; its classes are those
            written (``predict.classes``).

    Returns:
        (file names relative to ``out_dir`` by kind, a note on what was not written and why).
    """
    label = np.asarray(label, dtype=np.uint8)
    if rules.classes is not None:  # the classes chosen; the others are background
        label = np.where(np.isin(label, list(segments.names)), label, 0).astype(np.uint8)
    writer = reader_of(props.kind)
    mask = ("mask", writer.label_name(item.key), lambda p: writer.write_label(p, label, props, binary))
    jobs: list[Job] = [mask]
    dicom, note = _dicom_jobs(item, source, props, rules, label, segments)
    jobs += dicom
    if "probabilities" in source:
        name = item.key + OUTPUT_TAILS["probabilities"]
        jobs.append(("probabilities", name, lambda p: write_probabilities(p, source, props, label.ndim)))
    if rules.overlays and label.ndim == 2:
        overlay = item.key + OUTPUT_TAILS["overlay"]
        jobs.append(("overlay", overlay, lambda p: write_overlay(p, source["picture"], label)))
    if "statistics" in source:
        stats = f"{item.key}_statistics.json"
        jobs.append(("statistics", stats, lambda p: write_json(p, {"key": item.key, **source["statistics"]})))
    written, failed = _run(jobs, out_dir)
    return written, failed or note


def _dicom_jobs(
    item: InputItem,
    source: dict[str, Any],
    props: Properties,
    rules: PredictConfig,
    label: np.ndarray,
    about: Segments,
) -> tuple[list[Job], str]:
    """The SEG (and RTSTRUCT) of a DICOM input, from the headers its reader kept; or why not."""
    if not (rules.write_seg and item.is_dicom):
        return [], ""
    missing = missing_uids(props)
    if missing:
        return [], f"no DICOM SEG: the source has no {missing} to reference"
    headers = props.headers
    seg_name = item.key + OUTPUT_TAILS["seg"]
    if item.kind != DICOM_SERIES:
        first = headers[0] if headers else None
        return [
            (
                "seg",
                seg_name,
                lambda p: dicom_seg.write_seg_image(label, item.files[0], p, about, header=first),
            )
        ], ""
    canonical, affine = source["canonical_label"], source["canonical_affine"]
    files = list(item.files)
    jobs: list[Job] = [
        ("seg", seg_name, lambda p: dicom_seg.write_seg(canonical, affine, files, p, about, headers=headers))
    ]
    if rules.write_rtstruct:
        rt = item.key + OUTPUT_TAILS["rtstruct"]
        limit, tol = rules.rtstruct_max_contours, rules.rtstruct_tolerance
        jobs.append(
            (
                "rtstruct",
                rt,
                lambda p: write_rtstruct(canonical, affine, files, p, about, headers, limit, tol),
            )
        )
    return jobs, ""


def _run(jobs: list[Job], out_dir: Path) -> tuple[dict[str, str], str]:
    """Write each job's file; a SEG or RTSTRUCT that cannot be built is a note, anything else
    removes the files this call created and goes on."""
    created: list[Path] = []
    written: dict[str, str] = {}
    note = ""
    try:
        for kind, name, write in jobs:
            path = inside(out_dir, name)
            if not path.exists():
                created.append(path)
            try:
                write(path)
            except (MedsegError, ValueError, KeyError, AttributeError, TypeError) as err:
                if kind not in ("seg", "rtstruct"):
                    raise
                note = f"no {'DICOM SEG' if kind == 'seg' else 'RTSTRUCT'}: {_plain(err)}"
                continue
            written[kind] = name
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return written, note


def write_probabilities(path: Path, source: dict[str, Any], props: Properties, ndim: int) -> None:
    """The mean class probabilities, classes on the last axis, laid out as the label map beside them:
    a picture's as its PNG (rows, columns, class), a 2D NIfTI or DICOM's as its label NIfTI
    (x = column, y = row, class, the same affine), a volume's on the canonical RAS grid."""
    probs = np.moveaxis(np.asarray(source["probabilities"], np.float32), 0, -1)
    if ndim == 2 and props.kind == RASTER:  # (rows, columns, C), as the PNG mask reads
        write_nifti(path, np.ascontiguousarray(probs), np.eye(4))
    elif ndim == 2:  # (rows, columns, C) stored as (x = column, y = row, C), as the label NIfTI
        write_nifti(path, probs.transpose(1, 0, 2).copy(), props.label_affine())
    else:
        write_nifti(path, probs, source["canonical_affine"])


def _plain(err: BaseException) -> str:
    """An error as one line, its type named when its text is empty or a bare key."""
    text = str(err).strip("'\"")
    return f"{type(err).__name__}: {text}" if isinstance(err, KeyError) or not text else text


def missing_uids(props: Properties) -> str | None:
    """The UIDs a DICOM SEG must reference that the source lacks (anonymised files), or None."""
    if not props.headers:
        return "header"
    ds = props.headers[0]
    needed = ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    absent = [t for t in needed if not ds.get(t)]
    return ", ".join(absent) or None


def write_overlay(path: Path, picture: np.ndarray, label: np.ndarray) -> None:
    """The picture as stored with the outline of the prediction, the longer side at most 1024."""
    step = max(1, int(np.ceil(max(label.shape) / OVERLAY_MAX_SIZE)))
    small_picture = np.asarray(picture)[::step, ::step]
    write_png(path, draw_overlay(small_picture, None, label[::step, ::step]))


def segments_of(cfg: PipelineConfig, algorithm: str | None = None, **parameters: str) -> Segments:
    """The segments of a study's SEGs: class names (those of ``predict.classes``, else all), their
    codes (``data.label_codes``, else the built-in table by name, else generic) and the algorithm
    (the pipeline, medseg's version and ``parameters`` such as the run and folds).

    Raises:
        MedsegError: a ``data.label_codes`` entry names no built-in code, or ``predict.classes``
            names a class the model does not have.
    """
    given = cfg.data.label_codes or {}
    names = chosen_classes(cfg.class_names, cfg.predict.classes)
    codes = {}
    for value, name in names.items():
        entry = given.get(name)
        own = entry if isinstance(entry, str) or entry is None else _own_code(entry)
        try:
            codes[value] = segment_code(name, value, own)
        except KeyError as err:
            raise MedsegError(str(err).strip("'\"")) from None
    return Segments(names, codes, algorithm or cfg.name, f"medseg {__version__}", dict(parameters))


def chosen_classes(names: dict[int, str], chosen: list[str] | None) -> dict[int, str]:
    """The classes ``predict.classes`` keeps (all when None), by value.

    Raises:
        MedsegError: a name the model does not have, or none at all.

    Example:
        >>> chosen_classes({1: "liver", 2: "spleen"}, ["spleen"])
        {2: 'spleen'}
    """
    if chosen is None:
        return dict(names)
    unknown = [n for n in chosen if n not in names.values()]
    if unknown or not chosen:
        raise MedsegError(
            f"predict.classes: {unknown or 'none given'}: not among the model's classes "
            f"{list(names.values())}; give some of them (--classes liver,spleen)"
        )
    return {v: n for v, n in names.items() if n in chosen}


def _own_code(entry: LabelCode) -> SegmentCode:
    side = {"left": LEFT, "right": RIGHT}.get(entry.laterality or "")
    rgb = tuple(entry.color) if entry.color else PALETTE[0]
    return SegmentCode(entry.category, entry.type, side, rgb)  # type: ignore[arg-type]
