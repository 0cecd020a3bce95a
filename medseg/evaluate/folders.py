"""``medseg evaluate``: score a folder of predictions against a folder of references.

Files pair by id: the name without its extension (``.png``, ``.jpg``, ``.nii``, ``.nii.gz``,
``.dcm``) and without ``--pred-suffix``/``--ref-suffix``; sub-folders are DICOM series (masks as
pixel data). A DICOM file is a 2D mask, or a DICOM SEG (read with highdicom and placed on the other
side's grid). Missing or extra predictions stop the run with both lists.

Mask values: a mask holding only 0 and 255 is read as 0/1, so 0/1 predictions scored against 0/255
references (or the reverse) are never all wrong or falsely perfect; other values are class labels.
Labels scored: ``--labels``, else every non-zero value found in the references. A prediction
holding values outside those labels is refused. Spacing: ``--spacing``, else the reference file's
(NIfTI and DICOM, in mm), else 1 (pixels).

Writes ``metrics.csv`` (one row per case and label) and ``summary.json`` (per label: mean, std,
median, infinite counts and diagonal-capped means of each metric, and the number of cases with an
empty reference or prediction).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.evaluate.casewise import Row, write_metrics_csv
from medseg.evaluate.metrics import DEFINITIONS, case_metrics, summarize_rows
from medseg.io.atomic import write_json
from medseg.io.geometry import AFFINE_TOL, place_on_grid
from medseg.io.names import normalise_id
from medseg.io.readers import Mask, case_stem, read_mask

log = logging.getLogger(__name__)


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
PREDICT_SIDE_FILES = ("_overlay.png", "_seg.dcm", "_rtstruct.dcm", "_probabilities.nii.gz")


def list_masks(folder: Path, suffix: str, role: str) -> dict[str, Path]:
    """The masks of a folder by case id.

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
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or (role == "pred" and path.name.endswith(PREDICT_SIDE_FILES)):
            continue
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
    pred_dir: Path, ref_dir: Path, pred_suffix: str, ref_suffix: str
) -> dict[str, tuple[Path, Path]]:
    """Case id -> (prediction, reference); DataError listing missing and extra predictions."""
    preds = list_masks(Path(pred_dir), pred_suffix, "pred")
    refs = list_masks(Path(ref_dir), ref_suffix, "ref")
    missing, extra = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction for {len(missing)} reference(s): {missing[:10]}")
        if extra:
            parts.append(f"{len(extra)} prediction(s) without a reference: {extra[:10]}")
        raise DataError(f"{pred_dir} vs {ref_dir}: " + "; ".join(parts) + " (pairing is by file name)")
    shown = {key: normalise_id(case_id(path, ref_suffix) or key) for key, path in refs.items()}
    return {shown[key]: (preds[key], refs[key]) for key in sorted(refs, key=shown.__getitem__)}


def reference_labels(pairs: dict[str, tuple[Path, Path]], ref_dir: Path) -> list[int]:
    """Every non-zero value of the references (read one at a time)."""
    found: set[int] = set()
    for _, ref in pairs.values():
        found |= {int(v) for v in np.unique(normalise(read_mask(ref).array, ref)) if v != 0}
    if not found:
        raise DataError(f"{ref_dir}: every reference is empty; give --labels to score anyway")
    return sorted(found)


def score_pair(
    cid: str,
    paths: tuple[Path, Path],
    labels: Sequence[int],
    tolerances: Sequence[float],
    spacing: Sequence[float] | None,
    jaccard_threshold: float,
) -> list[Row]:
    """Rows of one case; the masks are read, aligned, scored and dropped."""
    pred_path, ref_path = paths
    ref_mask = read_mask(ref_path)
    pred, ref = align(read_mask(pred_path), ref_mask, cid)
    p, r = normalise(pred, pred_path), normalise(ref, ref_path)
    odd = sorted(set(np.unique(p).tolist()) - {0, *labels})
    if odd:
        raise DataError(f"{pred_path}: values {odd[:8]} are not among the labels {list(labels)}")
    sp = list(spacing) if spacing is not None else ref_mask.spacing or [1.0] * r.ndim
    if len(sp) != r.ndim:
        raise DataError(f"--spacing: {len(sp)} values for the {r.ndim}D case '{cid}'")
    return [
        {"case": cid, "label": label, **case_metrics(p, r, label, sp, tol, jaccard_threshold)}
        for label, tol in zip(labels, tolerances, strict=True)
    ]


def _check_positive(values: Sequence[float], option: str) -> None:
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise DataError(f"{option}: {bad[0]} is not a positive number of mm")


def evaluate_folders(
    pred_dir: Path,
    ref_dir: Path,
    out_dir: Path,
    spacing: Sequence[float] | None = None,
    labels: Sequence[int] | None = None,
    tolerance: Sequence[float] = (2.0,),
    jaccard_threshold: float = 0.65,
    pred_suffix: str = "",
    ref_suffix: str = "",
) -> dict[str, Any]:
    """Score every prediction in ``pred_dir`` against its reference in ``ref_dir``.

    Cases are read one at a time, so memory holds one pair, whatever the folder's size.

    Args:
        pred_dir: folder of predicted masks.
        ref_dir: folder of reference masks (pairing is by file name).
        out_dir: where ``metrics.csv`` and ``summary.json`` go.
        spacing: voxel spacing; default from the reference files (1 for pictures).
        labels: labels to score; default every non-zero value of the references.
        tolerance: Surface Dice tolerance, one or one per label.
        jaccard_threshold: the ISIC thresholded-Jaccard cut-off.
        pred_suffix: dropped from prediction names before pairing.
        ref_suffix: dropped from reference names before pairing.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        DataError: unpaired files, masks on other grids, values outside the labels, a tolerance or
            spacing that is not a positive number, or ``out_dir`` that is a file.
    """
    _check_positive(tolerance, "--tolerance")
    _check_positive(spacing or [], "--spacing")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(f"--out: '{out_dir}' is a file; give a folder for metrics.csv and summary.json")
    pairs = pair_masks(pred_dir, ref_dir, pred_suffix, ref_suffix)
    if labels is None:
        labels = reference_labels(pairs, Path(ref_dir))
    tolerances = list(tolerance) * len(labels) if len(tolerance) == 1 else list(tolerance)
    if len(tolerances) != len(labels):
        raise DataError(f"--tolerance: {len(tolerance)} values for {len(labels)} labels {list(labels)}")
    rows: list[Row] = []
    for cid, paths in pairs.items():
        rows += score_pair(cid, paths, labels, tolerances, spacing, jaccard_threshold)
    out_dir = Path(out_dir)
    write_metrics_csv(out_dir / "metrics.csv", rows)
    summary = {
        "pred": str(pred_dir),
        "ref": str(ref_dir),
        "n_cases": len(pairs),
        "labels": {
            f"label_{label}": summarize_rows([r for r in rows if r["label"] == label]) for label in labels
        },
        "settings": {
            "spacing": list(spacing) if spacing is not None else "from the reference files (1 for pictures)",
            "nsd_tolerance": dict(zip([str(x) for x in labels], tolerances, strict=True)),
            "jaccard_threshold": jaccard_threshold,
        },
        "definitions": DEFINITIONS,
    }
    write_json(out_dir / "summary.json", summary)
    return summary
