"""Post-processing chosen from cross-validation, as nnU-Net chooses it, and applied to the results.

With ``infer.largest_component: auto`` every held-out case is also scored with two variants:
keeping the largest connected component of all foreground taken as one (``foreground``), and of
each class on its own (``each``). Once every fold is scored, ``foreground`` is adopted only if the
cross-validated mean Dice over classes rises and no class gets worse; otherwise each class whose
own mean Dice rises with ``each`` keeps only its largest component. With ``infer.fill_holes: auto``
each of these three is also scored with the holes of every class filled (``none_filled``,
``foreground_filled``, ``each_filled``), and once the largest component is chosen (none, all
foreground, or every class) filling holes on top of it is adopted only if the mean Dice rises
again and no class gets worse; after a choice of some classes alone it is not measured and stays
off. The choice and the numbers behind it go into ``postprocessing.json`` (and from there
``summary.json``, the report and the run's ``config.yaml``), so ``medseg predict`` applies it.

The study's results then describe what ``predict`` delivers (:func:`adopt`): each fold's
``metrics.csv`` holds the post-processed scores and ``predictions/`` the post-processed label maps,
while ``metrics_raw.csv`` and ``predictions_raw/`` keep them as predicted, before post-processing
(nnU-Net, too, keeps both). Every variant is scored in full when the fold is scored
(``metrics_foreground.csv``, ``metrics_each.csv``), so adopting one reads no image again. A
variant's rows per class are separable: keeping the largest component of class k alone changes no
other class, so a list of classes takes those classes' rows from ``each`` and the rest from the raw.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluate.casewise import Row, read_metrics_csv, write_metrics_csv
from medseg.infer.postprocess import fill_holes, keep_largest, postprocess
from medseg.io.atomic import atomic_path
from medseg.io.readers import NIFTI, RASTER
from medseg.run_dir import FoldDir

LARGEST = ("none", "foreground", "each")
FILLED = tuple(f"{v}_filled" for v in LARGEST)
VARIANTS = LARGEST + FILLED


def variant_names(holes: bool) -> list[str]:
    """The post-processing variants scored besides the prediction itself (``holes``: the filled ones too)."""
    return [v for v in (VARIANTS if holes else LARGEST) if v != "none"]


def _on_copy(label: np.ndarray, step: Callable[[Any], Any]) -> np.ndarray:
    """``step`` (of :mod:`medseg.infer.postprocess`) on a channel-first copy of ``label``: MONAI
    edits in place."""
    import torch

    copy = torch.as_tensor(np.array(label))[None]
    return np.asarray(torch.as_tensor(step(copy))[0]).astype(label.dtype)


def largest_components(label: np.ndarray, classes: list[int], joint: bool) -> np.ndarray:
    """``label`` keeping the largest connected component of ``classes`` (joint: of their union)."""
    if not classes:
        return label
    return _on_copy(label, lambda t: keep_largest(t, classes, joint))


def dice(pred: np.ndarray, ref: np.ndarray, k: int, ignore: int | None = None) -> float:
    """Dice of class ``k``; NaN when both are empty (left out of means)."""
    keep = np.ones(ref.shape, bool) if ignore is None else ref != ignore
    p, r = (pred == k) & keep, (ref == k) & keep
    total = int(p.sum() + r.sum())
    return float("nan") if total == 0 else 2.0 * float((p & r).sum()) / total


def filled(label: np.ndarray, classes: list[int]) -> np.ndarray:
    """``label`` with the holes enclosed by each of ``classes`` filled."""
    return _on_copy(label, lambda t: fill_holes(t, classes))


def variant_maps(pred: np.ndarray, num_classes: int, holes: bool = False) -> dict[str, np.ndarray]:
    """The label map as predicted (``none``) and with each post-processing variant (``holes``: and
    each of those with its holes filled)."""
    classes = list(range(1, num_classes))
    maps = {
        "none": pred,
        "foreground": largest_components(pred, classes, joint=True),
        "each": largest_components(pred, classes, joint=False),
    }
    if holes:
        maps |= {f"{v}_filled": filled(maps[v], classes) for v in LARGEST}
    return maps


def variant_rows(
    case_id: str,
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    ignore: int | None,
    maps: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """One row per class: the case's Dice without post-processing and with each variant
    (``maps``: :func:`variant_maps` of ``pred``, when already made)."""
    versions = maps or variant_maps(pred, num_classes)
    return [
        {"case": case_id, "class": k, **{v: dice(m, ref, k, ignore) for v, m in versions.items()}}
        for k in range(1, num_classes)
    ]


def score_variants(
    maps: dict[str, np.ndarray], raw: list[Row], score: Callable[[np.ndarray], list[Row]]
) -> dict[str, list[Row]]:
    """Every metric of each variant of one case, scoring a map only when it differs from one
    already scored (one class: ``each`` is ``foreground``; one component: both are as predicted).

    Args:
        maps: :func:`variant_maps` of the case.
        raw: the case's rows as predicted.
        score: a label map -> the case's rows.

    Returns:
        The rows of every variant but ``none``.
    """
    done: dict[str, list[Row]] = {"none": raw}
    for name in (v for v in maps if v != "none"):
        same = next((k for k in done if np.array_equal(maps[k], maps[name])), None)
        done[name] = done[same] if same is not None else score(maps[name])
    return {name: rows for name, rows in done.items() if name != "none"}


def write_variants(path: Path, rows: list[dict], holes: bool = False) -> None:
    """A fold's ``postprocessing.csv``: each case's Dice per class as predicted and with each variant."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "class", "none", *variant_names(holes)])
        writer.writeheader()
        writer.writerows(rows)


def _read(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows += [{k: float(v) if k != "case" else v for k, v in r.items()} for r in csv.DictReader(fh)]
    return rows


def choose(paths: list[Path]) -> dict[str, Any]:
    """The post-processing the cross-validated Dice supports.

    Args:
        paths: every fold's ``postprocessing.csv``.

    Returns:
        ``value`` (for ``infer.largest_component``: false, ``foreground`` or a list of classes),
        ``fill_holes`` (for ``infer.fill_holes``), the mean Dice per class of each variant, and the
        reason.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "pp.csv"
        >>> write_variants(p, [{"case": "a", "class": 1, "none": 0.8, "foreground": 0.9, "each": 0.9}])
        >>> choose([p])["value"], choose([p])["fill_holes"]
        ('foreground', False)
    """
    rows = _read(paths)
    classes = sorted({int(r["class"]) for r in rows})
    scored = [v for v in VARIANTS if rows and v in rows[0]] or list(LARGEST)
    means = {
        v: {str(k): float(np.nanmean([r[v] for r in rows if int(r["class"]) == k])) for k in classes}
        for v in scored
    }
    overall = {v: float(np.mean(list(means[v].values()))) for v in scored}
    value, reason = _largest(means, overall, classes)
    holes, why = _holes(means, overall, _base(value, classes))
    return {
        "value": value,
        "fill_holes": holes,
        "reason": reason + (f"; {why}" if why else ""),
        "mean_dice": means,
        "overall_mean_dice": overall,
        "n_rows": len(rows),
    }


def _better(means: dict[str, dict[str, float]], overall: dict[str, float], new: str, old: str) -> bool:
    """Variant ``new`` raises the mean Dice over ``old`` and no class gets worse."""
    return overall[new] > overall[old] and all(means[new][k] >= means[old][k] for k in means[old])


def _largest(
    means: dict[str, dict[str, float]], overall: dict[str, float], classes: list[int]
) -> tuple[Any, str]:
    """The largest-component choice (``value`` of :func:`choose`) and its reason."""
    if _better(means, overall, "foreground", "none"):
        return "foreground", "largest component of all foreground: mean Dice rises and no class gets worse"
    value = [k for k in classes if means["each"][str(k)] > means["none"][str(k)]] or False
    if value:
        return value, f"largest component of class(es) {value}: their own mean Dice rises"
    return False, "none: no variant raises the cross-validated Dice"


def _base(value: Any, classes: list[int]) -> str | None:
    """The scored variant a largest-component choice is (None: some classes alone, not one)."""
    if not value:
        return "none"
    if value == "foreground":
        return "foreground"
    return "each" if sorted(int(k) for k in value) == classes else None


def _holes(
    means: dict[str, dict[str, float]], overall: dict[str, float], base: str | None
) -> tuple[bool, str]:
    """Whether filling holes after the largest-component choice (scored as ``base``) is adopted, and why."""
    if "none_filled" not in means:  # infer.fill_holes was not auto
        return False, ""
    if base is None:
        return False, "holes not filled: not scored after a choice of some classes"
    if _better(means, overall, f"{base}_filled", base):
        return True, "then holes filled: mean Dice rises again and no class gets worse"
    return False, "holes not filled: that raises no mean Dice or makes a class worse"


def adopted_key(value: Any, holes: bool, classes: list[int]) -> str | None:
    """The scored variant whose rows are the adopted post-processing's (None: assembled per class)."""
    base = _base(value, classes)
    if holes and base is not None:
        return f"{base}_filled"
    return base if base in ("none", "foreground") else None


def adopted_rows(
    raw: list[Row], variants: dict[str, list[Row]], value: Any, holes: bool = False
) -> list[Row]:
    """A fold's rows with the adopted post-processing (``value`` and ``fill_holes`` of :func:`choose`).

    Example:
        >>> raw = [{"case": "a", "label": 1, "dice": 0.5}, {"case": "a", "label": 2, "dice": 0.6}]
        >>> each = [{"case": "a", "label": 1, "dice": 0.9}, {"case": "a", "label": 2, "dice": 0.4}]
        >>> [r["dice"] for r in adopted_rows(raw, {"each": each}, [1])]
        [0.9, 0.6]
    """
    key = adopted_key(value, holes, sorted({int(r["label"]) for r in raw}))
    if key is not None:
        return raw if key == "none" else variants[key]
    chosen = {int(k) for k in value}  # some classes, each on its own: separable per class
    each = {(r["case"], int(r["label"])): r for r in variants["each"]}
    return [each[(r["case"], int(r["label"]))] if int(r["label"]) in chosen else r for r in raw]


def postprocess_map(label: np.ndarray, value: Any, num_classes: int, holes: bool = False) -> np.ndarray:
    """A label map with the adopted post-processing (``value`` and ``fill_holes`` of :func:`choose`):
    ``medseg predict``'s own post-processing, on a copy."""
    import torch

    from medseg.config.models import InferConfig

    settings = InferConfig(largest_component=value or False, fill_holes=holes)
    out = postprocess(torch.as_tensor(np.array(label)), settings, num_classes)
    return np.asarray(out).astype(label.dtype)


def _read_map(path: Path, binary_png: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(class map, NIfTI affine or None) of a held-out prediction file."""
    if NIFTI.matches(path):
        array, affine, _ = NIFTI.read_3d(path)
        return np.asarray(array).astype(np.uint8), affine
    array = RASTER.read_2d(path)[0]
    return ((array > 0) if binary_png else array).astype(np.uint8), None


def _write_map(path: Path, label: np.ndarray, affine: np.ndarray | None, binary_png: bool) -> None:
    if affine is not None:
        NIFTI.write(path, label, affine)
    else:
        RASTER.write(path, label * np.uint8(255 if binary_png else 1))


def adopt_predictions(fold: FoldDir, value: Any, num_classes: int, holes: bool = False) -> set[str]:
    """Rewrite a fold's held-out predictions with the adopted post-processing, keeping each as
    predicted in ``predictions_raw/`` (copied once, so running this again changes nothing).

    Returns:
        The names of the files whose label map the post-processing changed.
    """
    changed: set[str] = set()
    if not (value or holes) or not fold.predictions.is_dir():
        return changed
    fold.predictions_raw.mkdir(exist_ok=True)
    binary_png = num_classes == 2
    for path in sorted(p for p in fold.predictions.iterdir() if p.is_file()):
        raw_path = fold.predictions_raw / path.name
        if not raw_path.is_file():
            with atomic_path(raw_path) as tmp:
                shutil.copyfile(path, tmp)
        raw, affine = _read_map(raw_path, binary_png)
        post = postprocess_map(raw, value, num_classes, holes)
        if not np.array_equal(post, raw):
            changed.add(path.name)
            _write_map(path, post, affine, binary_png)
    return changed


def adopt(fold: FoldDir, value: Any, num_classes: int, holes: bool = False) -> tuple[list[Row], set[str]]:
    """Make a fold's results those of the adopted post-processing: ``metrics.csv`` from its raw
    and variant rows (``metrics_raw.csv`` stays), and its predictions rewritten.

    Args:
        fold: a fold scored with ``infer.largest_component: auto``.
        value: the largest-component choice (:func:`choose`).
        num_classes: classes with background.
        holes: the choice to fill holes after it.

    Returns:
        The fold's rows as now in ``metrics.csv``, and the prediction files that changed.
    """
    raw = read_metrics_csv(fold.metrics_raw)
    scored = (v for v in variant_names(holes) if fold.metrics_variant(v).is_file())
    variants = {v: read_metrics_csv(fold.metrics_variant(v)) for v in scored} if value or holes else {}
    rows = adopted_rows(raw, variants, value, holes)
    write_metrics_csv(fold.metrics, rows)
    return rows, adopt_predictions(fold, value, num_classes, holes)
