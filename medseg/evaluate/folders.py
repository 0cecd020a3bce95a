"""``medseg evaluate``: score a folder of predictions against a folder of references.

Files pair by id: the name without its extension (``.png``, ``.jpg``, ``.nii``, ``.nii.gz``,
``.dcm``) and without ``--pred-suffix``/``--ref-suffix``; sub-folders are DICOM series (masks as
pixel data). A DICOM file is a 2D mask, or a DICOM SEG (read with highdicom and placed on the other
side's grid). A ``medseg predict`` output folder is read through its ``manifest.csv``, so overlays,
SEGs, RTSTRUCTs and probabilities beside the masks are never taken for predictions. The cases with
both files are scored; references without a prediction are counted and listed in ``summary.json``
(``--require-all`` refuses them), and a prediction without a reference stops the run with the list.

Mask values: a mask holding only 0 and 255 is read as 0/1, so 0/1 predictions scored against 0/255
references (or the reverse) are never all wrong or falsely perfect; other values are class labels.
Classes scored (:mod:`medseg.evaluate.classes`): named by ``--model`` or ``--classes``, the
references renumbered by ``--ref-labels`` or the model's ``data.labels``; else ``--labels``; else
every non-zero value found in the references or the predictions, named ``label_<value>``, so a class
only predicted scores as a false positive (Dice 0). Spacing: ``--spacing``, else the reference
file's (NIfTI and DICOM, in mm), else 1 (pixels).

Writes ``metrics.csv`` (one row per case and class, with the reference and predicted volumes) and
``summary.json`` (per class and for the mean over classes: mean, std, median, infinite counts and
diagonal-capped means of each metric, and the number of cases with an empty reference or
prediction; the classes' values; the references without a prediction).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.evaluate.casewise import Row, class_summaries, write_metrics_csv
from medseg.evaluate.classes import ScoredClass, remap_reference, unnamed
from medseg.evaluate.metrics import DEFINITIONS, case_metrics
from medseg.infer.manifest import NAME as MANIFEST
from medseg.infer.outputs import SIDE_FILES
from medseg.io.atomic import write_json
from medseg.io.geometry import AFFINE_TOL, place_on_grid
from medseg.io.names import normalise_id
from medseg.io.readers import Mask, case_stem, read_mask

log = logging.getLogger(__name__)

VOLUMES = (
    "ref_volume and pred_volume in metrics.csv: voxel counts times the voxel size, mm³ in 3D, mm² for "
    "2D DICOM and NIfTI, pixels for pictures"
)


def case_id(path: Path, suffix: str) -> str | None:
    """The case id of a mask file or series folder: its name without format suffix and ``suffix``.

    Args:
        path: a file or folder of the mask folder.
        suffix: the name ending every mask of that folder carries (``_segmentation``), or "".

    Returns:
        The case id, or None when the path is not a mask.
    """
    name = path.name
    if path.is_dir():
        stem = name
    else:
        stem = case_stem(name)
        if stem == name:
            return None
    if suffix:
        if not stem.endswith(suffix):
            return None
        stem = stem[: -len(suffix)]
    return stem


# what `medseg predict` writes beside each label map: not predictions of their own
PREDICT_SIDE_FILES = SIDE_FILES


def list_masks(folder: Path, suffix: str, role: str) -> dict[str, Path]:
    """The masks of a folder by case id.

    A prediction folder written by ``medseg predict`` holds other files beside each label map (the
    side files of :data:`medseg.infer.outputs.SIDE_FILES`): its ``manifest.csv`` lists the masks,
    and only those are taken. Without a manifest, every mask file is, side files left out.

    Args:
        folder: the folder of predictions or references.
        suffix: the name ending of its masks.
        role: ``pred`` or ``ref``, for messages.

    Returns:
        Case id (Unicode NFC, case-folded: the key files pair by) -> mask path.

    Raises:
        DataError: a missing folder, no masks, or two files of one case (names that differ only in
            letter case or Unicode form included).
    """
    if not folder.is_dir():
        raise DataError(f"--{role}: folder '{folder}' not found")
    found: dict[str, Path] = {}
    for path in _candidates(folder, role):
        cid = case_id(path, suffix)
        if cid is None:
            continue
        key = normalise_id(cid).casefold()
        if key in found:
            raise DataError(
                f"--{role}: two files for case '{cid}': {found[key].name} and {path.name} (ids are "
                "compared ignoring letter case and Unicode form); remove one"
            )
        found[key] = path
    if not found:
        raise DataError(f"--{role}: no masks in '{folder}' (PNG, NIfTI, DICOM files or series folders)")
    return found


def _candidates(folder: Path, role: str) -> list[Path]:
    """The files and folders of ``folder`` that may be masks: for predictions, those its
    ``manifest.csv`` lists when ``medseg predict`` wrote one, else all but predict's side files."""
    if role == "pred" and (listed := predicted_masks(folder)) is not None:
        return listed
    side = PREDICT_SIDE_FILES if role == "pred" else ()
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and not p.name.endswith(side)]


def predicted_masks(folder: Path) -> list[Path] | None:
    """The label maps ``medseg predict`` wrote into ``folder``, from its ``manifest.csv`` (the
    ``mask`` of each input done); None when the folder has no such manifest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "mask" not in rows[0]:
        return None
    named = [row["mask"] for row in rows if row.get("status") == "done" and row.get("mask")]
    paths = [folder / name for name in named if "/" not in name and (folder / name).exists()]
    if len(paths) < len(named):
        log.warning(
            "--pred: %s lists %d mask(s) no longer in the folder; scoring the %d there",
            manifest, len(named) - len(paths), len(paths),
        )  # fmt: skip
    log.info("--pred: the %d mask(s) that %s lists (side files left out)", len(paths), manifest.name)
    return sorted(paths)


def normalise(array: np.ndarray, path: Path) -> np.ndarray:
    """Label values as integers; a 0/255 mask becomes 0/1; fractional values are refused."""
    values = np.unique(array)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise DataError(f"{path}: non-integer values (for example {values[:4].tolist()}); masks hold labels")
    if set(values.tolist()) <= {0, 255} and 255 in values:
        return (array == 255).astype(np.uint8)
    return array.astype(np.int64)


def align(pred: Mask, ref: Mask, cid: str) -> tuple[np.ndarray, np.ndarray]:
    """Both masks on the reference grid; DataError naming the case when they are not."""
    if pred.partial and pred.affine is not None and ref.affine is not None:
        placed = place_on_grid(pred.array, pred.affine, ref.array.shape, ref.affine, cid)
        pred = Mask(placed, ref.spacing, ref.affine)
    if ref.partial and ref.affine is not None and pred.affine is not None:
        placed = place_on_grid(ref.array, ref.affine, pred.array.shape, pred.affine, cid)
        ref = Mask(placed, ref.spacing, pred.affine)
    if pred.array.shape != ref.array.shape:
        raise DataError(
            f"{cid}: prediction shape {pred.array.shape} differs from reference {ref.array.shape}"
        )
    if pred.affine is not None and ref.affine is not None:
        diff = float(np.abs(pred.affine - ref.affine).max())
        if diff > AFFINE_TOL:
            raise DataError(
                f"{cid}: prediction and reference affines differ by {diff:.4g} mm; not the same grid"
            )
    return pred.array, ref.array


def pair_masks(
    pred_dir: Path, ref_dir: Path, pred_suffix: str, ref_suffix: str, require_all: bool = False
) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Pair predictions with references by case id.

    Returns:
        (case id -> (prediction, reference) for every case with both, the ids of the references
        that have no prediction).

    Raises:
        DataError: a prediction without a reference, no case in common, or (``require_all``) a
            reference without a prediction; the message lists them.
    """
    preds = list_masks(Path(pred_dir), pred_suffix, "pred")
    refs = list_masks(Path(ref_dir), ref_suffix, "ref")
    shown = {key: normalise_id(case_id(path, ref_suffix) or key) for key, path in refs.items()}
    missing = sorted(shown[k] for k in set(refs) - set(preds))
    extra = sorted(normalise_id(case_id(preds[k], pred_suffix) or k) for k in set(preds) - set(refs))
    shared = sorted(set(refs) & set(preds), key=shown.__getitem__)
    if extra or not shared or (missing and require_all):
        parts = []
        if missing and (require_all or not shared):
            parts.append(f"no prediction for {len(missing)} reference(s): {missing[:10]}")
        if extra:
            parts.append(f"{len(extra)} prediction(s) without a reference: {extra[:10]}")
        if not shared:
            parts.append("no case in common")
        raise DataError(
            f"{pred_dir} vs {ref_dir}: " + "; ".join(parts) + " (pairing is by file name; "
            "--pred-suffix and --ref-suffix drop name endings such as _segmentation)"
        )
    if missing:
        log.warning(
            "%d of %d reference(s) have no prediction and are not scored: %s%s (--require-all refuses this)",
            len(missing), len(refs), ", ".join(missing[:10]), " ..." if len(missing) > 10 else "",
        )  # fmt: skip
    return {shown[key]: (preds[key], refs[key]) for key in shared}, missing


def found_values(pairs: dict[str, tuple[Path, Path]], ref_dir: Path) -> list[int]:
    """Every non-zero value of the references and the predictions (read one at a time): a class
    only predicted is scored too, as a false positive."""
    found: set[int] = set()
    for paths in pairs.values():
        for path in paths:
            found |= {int(v) for v in np.unique(normalise(read_mask(path).array, path)) if v != 0}
    if not found:
        raise DataError(f"{ref_dir}: every reference and prediction is empty; give --labels to score anyway")
    return sorted(found)


def score_pair(
    cid: str,
    paths: tuple[Path, Path],
    classes: Sequence[ScoredClass],
    tolerances: Sequence[float],
    spacing: Sequence[float] | None,
    jaccard_threshold: float,
    allowed: Collection[int] | None = None,
) -> list[Row]:
    """Rows of one case; the masks are read, aligned, scored and dropped.

    Args:
        cid: the case id.
        paths: its prediction and reference.
        classes: what to score; the reference is renumbered into the predictions' values.
        tolerances: the Surface Dice tolerance of each class.
        spacing: voxel size in mm, or None for the reference's own (1 for pictures).
        jaccard_threshold: the ISIC thresholded-Jaccard cut-off.
        allowed: the only values a prediction may hold besides 0 (the classes of the model that
            wrote it); None: any.

    Returns:
        One row per class: metrics, voxel counts and volumes (voxel counts times the voxel size:
        mm³ in 3D, mm² for 2D DICOM and NIfTI, pixels for pictures).
    """
    pred_path, ref_path = paths
    ref_mask = read_mask(ref_path)
    pred, ref = align(read_mask(pred_path), ref_mask, cid)
    p, r = normalise(pred, pred_path), normalise(ref, ref_path)
    if allowed is not None and (odd := sorted(set(np.unique(p).tolist()) - {0, *allowed})):
        raise DataError(
            f"{pred_path}: values {odd[:8]} are not among the model's class values {sorted(allowed)}; "
            "give the --model that wrote the predictions"
        )
    r = remap_reference(r, list(classes))
    sp = list(spacing) if spacing is not None else ref_mask.spacing or [1.0] * r.ndim
    if len(sp) != r.ndim:
        raise DataError(f"--spacing: {len(sp)} values for the {r.ndim}D case '{cid}'")
    voxel = float(np.prod(sp))
    rows = []
    for c, tol in zip(classes, tolerances, strict=True):
        m = case_metrics(p, r, c.value, sp, tol, jaccard_threshold)
        volumes = {"ref_volume": m["ref_voxels"] * voxel, "pred_volume": m["pred_voxels"] * voxel}
        rows.append({"case": cid, "label": c.value, "class": c.name, **m, **volumes})
    return rows


def _check_positive(values: Sequence[float], option: str) -> None:
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise DataError(f"{option}: {bad[0]} is not a positive number of mm")


def _check_options(out_dir: Path, spacing: Sequence[float] | None, labels_and_classes: bool) -> None:
    _check_positive(spacing or [], "--spacing")
    if labels_and_classes:
        raise DataError(
            "--labels: give the classes by --labels, or by --model/--classes/--ref-labels, not both"
        )
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(f"--out: '{out_dir}' is a file; give a folder for metrics.csv and summary.json")


def _tolerances(classes: Sequence[ScoredClass], tolerance: Sequence[float] | None) -> list[float]:
    """One Surface Dice tolerance per class: ``--tolerance`` (one, or one per class), else each
    class's own (from ``--model``), else 2 mm."""
    if tolerance is None:
        return [c.tolerance if c.tolerance is not None else 2.0 for c in classes]
    _check_positive(tolerance, "--tolerance")
    if len(tolerance) == 1:
        return list(tolerance) * len(classes)
    if len(tolerance) != len(classes):
        names = [c.name for c in classes]
        raise DataError(f"--tolerance: {len(tolerance)} values for {len(classes)} classes {names}")
    return list(tolerance)


def evaluate_folders(
    pred_dir: Path,
    ref_dir: Path,
    out_dir: Path,
    spacing: Sequence[float] | None = None,
    labels: Sequence[int] | None = None,
    tolerance: Sequence[float] | None = None,
    jaccard_threshold: float = 0.65,
    pred_suffix: str = "",
    ref_suffix: str = "",
    classes: Sequence[ScoredClass] | None = None,
    require_all: bool = False,
    model_values: Collection[int] | None = None,
) -> dict[str, Any]:
    """Score every prediction in ``pred_dir`` against its reference in ``ref_dir``, one pair at a
    time in memory, whatever the folder's size.

    Args:
        pred_dir: folder of predicted masks (a ``medseg predict`` output folder included).
        ref_dir: folder of reference masks (pairing is by file name).
        out_dir: where ``metrics.csv`` and ``summary.json`` go.
        spacing: voxel spacing; default from the reference files (1 for pictures).
        labels: values to score, the same in both folders (unnamed).
        tolerance: Surface Dice tolerance, one or one per class; default each class's own, else 2.
        jaccard_threshold: the ISIC thresholded-Jaccard cut-off.
        pred_suffix: dropped from prediction names before pairing.
        ref_suffix: dropped from reference names before pairing.
        classes: named classes with their values in each folder (:mod:`medseg.evaluate.classes`);
            default: ``labels``, else every non-zero value of the references and predictions.
        require_all: refuse references without a prediction instead of scoring the cases in common.
        model_values: every class value of the model that wrote the predictions (``--model``): a
            prediction holding another is refused, as not written by that model.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        DataError: unpaired files, masks on other grids, prediction values not the model's, a
            tolerance or spacing that is not a positive number, or ``out_dir`` that is a file.
    """
    _check_options(out_dir, spacing, labels is not None and classes is not None)
    pairs, missing = pair_masks(pred_dir, ref_dir, pred_suffix, ref_suffix, require_all)
    if classes is None:
        classes = unnamed(list(labels) if labels is not None else found_values(pairs, Path(ref_dir)))
    tolerances = _tolerances(classes, tolerance)
    rows: list[Row] = []
    for cid, paths in pairs.items():
        rows += score_pair(cid, paths, classes, tolerances, spacing, jaccard_threshold, model_values)
    out_dir = Path(out_dir)
    write_metrics_csv(out_dir / "metrics.csv", rows)
    summary = {
        "pred": str(pred_dir),
        "ref": str(ref_dir),
        "n_cases": len(pairs),
        "n_references_without_prediction": len(missing),
        "references_without_prediction": missing,
        **_described(rows, classes, tolerances, spacing, jaccard_threshold),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _described(
    rows: list[Row],
    classes: Sequence[ScoredClass],
    tolerances: list[float],
    spacing: Sequence[float] | None,
    jaccard_threshold: float,
) -> dict[str, Any]:
    """The summaries per class and of the mean over classes, each class's values, the settings and
    the metric definitions, for ``summary.json``."""
    return {
        "labels": class_summaries(rows),
        "classes": {c.name: {"pred_value": c.value, "ref_values": list(c.ref_values)} for c in classes},
        "settings": {
            "spacing": list(spacing) if spacing is not None else "from the reference files (1 for pictures)",
            "nsd_tolerance": {c.name: t for c, t in zip(classes, tolerances, strict=True)},
            "jaccard_threshold": jaccard_threshold,
            "volumes": VOLUMES,
        },
        "definitions": DEFINITIONS,
    }
