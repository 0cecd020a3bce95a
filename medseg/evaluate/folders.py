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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


@dataclass
class Mask:
    array: np.ndarray
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None  # canonical RAS affine of 3D masks
    partial: bool = False  # a DICOM SEG covering only its non-empty frames


def case_id(path: Path, suffix: str) -> str | None:
    name = path.name
    if path.is_dir():
        stem = name
    else:
        ext = next((e for e in SUFFIXES if name.lower().endswith(e)), None)
        if ext is None:
            return None
        stem = name[: -len(ext)]
    if suffix:
        if not stem.endswith(suffix):
            return None
        stem = stem[: -len(suffix)]
    return stem


def list_masks(folder: Path, suffix: str, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"--{role}: folder '{folder}' not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        cid = case_id(path, suffix)
        if cid is None:
            continue
        if cid in found:
            raise DataError(f"--{role}: two files for case '{cid}': {found[cid].name} and {path.name}")
        found[cid] = path
    if not found:
        raise DataError(f"--{role}: no masks in '{folder}' (PNG, NIfTI, DICOM files or series folders)")
    return found


def read_mask(path: Path) -> Mask:
    from medseg.io.dicom_seg import is_seg, read_seg
    from medseg.io.volume import kind_of, read_image2d, read_volume

    kind = kind_of(path)
    if kind == "dicom" and is_seg(path):
        array, affine = read_seg(path)
        return Mask(array, tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)), affine, True)
    if kind == "dicom_dir" or (kind == "nifti" and _is_3d_nifti(path)):
        array, affine, tags = read_volume(path)
        if array.ndim != 3:
            raise DataError(f"{path}: shape {array.shape}; a mask needs one channel")
        return Mask(array, tuple(tags["spacing"]), affine)
    array, tags = read_image2d(path)
    if array.ndim != 2:
        raise DataError(f"{path}: {array.shape[2]} channels; save masks as single-channel images")
    spacing = None if tags.get("spacing_source") == "pixel" else tuple(tags["spacing"])
    return Mask(array, spacing, None)


def _is_3d_nifti(path: Path) -> bool:
    import nibabel as nib

    shape = [s for s in nib.load(str(path)).shape if s != 1]  # type: ignore[attr-defined]
    return len(shape) >= 3


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
    from medseg.io.volume import AFFINE_TOL, place_on_grid

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
    from medseg.evaluate.casewise import write_metrics_csv
    from medseg.evaluate.metrics import case_metrics, summarize_rows
    from medseg.evaluate.report import DEFINITIONS
    from medseg.io.atomic import write_json

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
    loaded = {cid: (read_mask(preds[cid]), read_mask(refs[cid])) for cid in sorted(refs)}
    arrays = {}
    for cid, (pm, rm) in loaded.items():
        p, r = align(pm, rm, cid)
        arrays[cid] = (normalise(p, preds[cid]), normalise(r, refs[cid]))
    if labels is None:
        labels = sorted({int(v) for _, r in arrays.values() for v in np.unique(r) if v != 0})
        if not labels:
            raise DataError(f"{ref_dir}: every reference is empty; give --labels to score anyway")
    tolerances = list(tolerance) * len(labels) if len(tolerance) == 1 else list(tolerance)
    if len(tolerances) != len(labels):
        raise DataError(f"--tolerance: {len(tolerance)} values for {len(labels)} labels {list(labels)}")
    rows = []
    for cid, (p, r) in arrays.items():
        odd = sorted(set(np.unique(p).tolist()) - {0, *labels})
        if odd:
            raise DataError(f"{preds[cid]}: values {odd[:8]} are not among the labels {list(labels)}")
        sp = list(spacing) if spacing is not None else loaded[cid][1].spacing or [1.0] * r.ndim
        if len(sp) != r.ndim:
            raise DataError(f"--spacing: {len(sp)} values for the {r.ndim}D case '{cid}'")
        for label, tol in zip(labels, tolerances, strict=True):
            m = case_metrics(p, r, label, sp, tol, jaccard_threshold)
            rows.append({"case": cid, "label": label, **m})
    out_dir = Path(out_dir)
    write_metrics_csv(out_dir / "metrics.csv", rows)
    summary = {
        "pred": str(pred_dir),
        "ref": str(ref_dir),
        "n_cases": len(arrays),
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
