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
  (``predict.write_probabilities``; 2D on the input's grid, 3D on its canonical RAS grid).

Every file is written to a temporary name and renamed, so a killed batch leaves no partial file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medseg import __version__
from medseg.config.models import LabelCode, PipelineConfig
from medseg.errors import MedsegError
from medseg.infer.discover import InputItem
from medseg.io.dicom import read_header
from medseg.io.dicom_seg import Segments
from medseg.io.names import inside
from medseg.io.overlay import draw_overlay
from medseg.io.readers import DICOM_SEG, NIFTI, RASTER
from medseg.io.rtstruct import write_rtstruct
from medseg.io.segment_codes import LEFT, PALETTE, RIGHT, SegmentCode, segment_code

OVERLAY_MAX_SIZE = 1024  # longer side of overlay pictures, in pixels


def write_outputs(
    item: InputItem,
    label: np.ndarray,
    source: dict[str, Any],
    cfg: PipelineConfig,
    out_dir: Path,
    segments: Segments | None = None,
) -> tuple[dict[str, str], str]:
    """Write the outputs of one input from its label map on the source grid.

    When the mask or overlay cannot be written, the files this call created are removed before the
    error goes on, so an input has all its files or none. A DICOM SEG that cannot be built (a source
    lacking what a SEG must reference) is left out with the reason in the note; the mask stays.

    Args:
        item: the input (its kind, paths and UIDs).
        label: integer label map on the source grid.
        source: ``affine`` (the source grid's RAS affine, 3D and NIfTI), ``picture`` (2D overlays)
            and, for the DICOM SEG of a series, ``canonical_label`` and ``canonical_affine``.
        cfg: the configuration the model was trained with (class names, output kinds).
        out_dir: the output folder.
        segments: what the DICOM SEG says of its segments and algorithm (default: from ``cfg``).

    Returns:
        (file names relative to ``out_dir`` by kind, a note on what was not written and why).
    """
    note = ""
    label = np.asarray(label, dtype=np.uint8)
    jobs: list[tuple[str, str, Callable[[Path], object]]] = []  # (kind, file name, writer)
    if item.kind == RASTER.kind:
        scale = np.uint8(255 if cfg.data.num_classes == 2 else 1)
        jobs.append(("mask", f"{item.key}.png", lambda p: RASTER.write(p, label * scale)))
    else:  # NIfTI; a 2D label (rows, columns) is stored as (x = column, y = row)
        stored = label.T.copy() if label.ndim == 2 else label
        jobs.append(("mask", f"{item.key}.nii.gz", lambda p: NIFTI.write(p, stored, source["affine"])))
    missing = missing_uids(item) if cfg.predict.write_seg and item.is_dicom else None
    if missing:
        note = f"no DICOM SEG: the source has no {missing} to reference"
    elif cfg.predict.write_seg and item.is_dicom:
        about = segments or segments_of(cfg)

        def seg(path: Path) -> object:
            if item.kind == "dicom_series":
                canonical, affine = source["canonical_label"], source["canonical_affine"]
                return DICOM_SEG.write_series(canonical, affine, list(item.files), path, about)
            return DICOM_SEG.write_image(label, item.files[0], path, about)

        jobs.append(("seg", f"{item.key}_seg.dcm", seg))
        if cfg.predict.write_rtstruct and item.kind == "dicom_series":

            def rtstruct(path: Path) -> object:
                canonical, affine = source["canonical_label"], source["canonical_affine"]
                return write_rtstruct(canonical, affine, list(item.files), path, about)

            jobs.append(("rtstruct", f"{item.key}_rtstruct.dcm", rtstruct))
    if "probabilities" in source:
        probs = np.moveaxis(np.asarray(source["probabilities"], np.float32), 0, -1)
        if label.ndim == 2:  # (rows, columns, C) stored as (x = column, y = row, C)
            probs, prob_affine = probs.transpose(1, 0, 2).copy(), source["affine"]
        else:
            prob_affine = source["canonical_affine"]
        name = f"{item.key}_probabilities.nii.gz"
        jobs.append(("probabilities", name, lambda p: NIFTI.write(p, probs, prob_affine)))
    if cfg.predict.overlays and label.ndim == 2:
        jobs.append(
            ("overlay", f"{item.key}_overlay.png", lambda p: write_overlay(p, source["picture"], label))
        )
    created: list[Path] = []
    written = {}
    try:
        for kind, name, write in jobs:
            path = inside(out_dir, name)
            if not path.exists():
                created.append(path)
            if kind in ("seg", "rtstruct"):
                try:
                    write(path)
                except (MedsegError, ValueError, KeyError, AttributeError, TypeError) as err:
                    note = f"no {'DICOM SEG' if kind == 'seg' else 'RTSTRUCT'}: {_plain(err)}"
                    continue
            else:
                write(path)
            written[kind] = name
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return written, note


def _plain(err: BaseException) -> str:
    """An error as one line, its type named when its text is empty or a bare key."""
    text = str(err).strip("'\"")
    return f"{type(err).__name__}: {text}" if isinstance(err, KeyError) or not text else text


def missing_uids(item: InputItem) -> str | None:
    """The UIDs a DICOM SEG must reference that the source lacks (anonymised files), or None."""
    ds = read_header(item.files[0])
    needed = ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    absent = [t for t in needed if not ds.get(t)]
    return ", ".join(absent) or None


def write_overlay(path: Path, picture: np.ndarray, label: np.ndarray) -> None:
    """The picture as stored with the outline of the prediction, the longer side at most 1024."""
    step = max(1, int(np.ceil(max(label.shape) / OVERLAY_MAX_SIZE)))
    small_picture = np.asarray(picture)[::step, ::step]
    RASTER.write(path, draw_overlay(small_picture, None, label[::step, ::step]))


def segments_of(cfg: PipelineConfig, algorithm: str | None = None, **parameters: str) -> Segments:
    """The segments of a study's SEGs: class names, their codes (``data.label_codes``, else the
    built-in table by name, else generic) and the algorithm (the pipeline, medseg's version and
    ``parameters`` such as the run and folds).

    Raises:
        MedsegError: a ``data.label_codes`` entry names no built-in code.
    """
    given = cfg.data.label_codes or {}
    codes = {}
    for value, name in cfg.class_names.items():
        entry = given.get(name)
        own = entry if isinstance(entry, str) or entry is None else _own_code(entry)
        try:
            codes[value] = segment_code(name, value, own)
        except KeyError as err:
            raise MedsegError(str(err).strip("'\"")) from None
    return Segments(cfg.class_names, codes, algorithm or cfg.name, f"medseg {__version__}", dict(parameters))


def _own_code(entry: LabelCode) -> SegmentCode:
    side = {"left": LEFT, "right": RIGHT}.get(entry.laterality or "")
    rgb = tuple(entry.color) if entry.color else PALETTE[0]
    return SegmentCode(entry.category, entry.type, side, rgb)  # type: ignore[arg-type]
