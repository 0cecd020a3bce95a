"""Overlay pictures of held-out cases: the image with the reference and the predicted outlines, one
colour per class with a legend, each class's Dice in the title.

Written to ``fold_k/overlays/<id>.png`` for every case (``evaluate.overlays: all``) or the fold's
``evaluate.n_worst`` (``worst``). 2D: image, reference, prediction side by side. 3D: the axial,
coronal and sagittal planes through the centre of the structure (the reference's, else the
prediction's), reference above prediction, shown the radiological way (patient's right on the
left), with the slice indices; CT in a soft-tissue window (W 400, L 40 HU). Images and labels are
thinned to at most :data:`DRAWN` pixels a side before drawing (an 8000x6000 picture: every 8th
pixel), labels in their own dtype, so an overlay needs little more memory than reading its case.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.errors import out_of_memory_named
from medseg.evaluate.casewise import Row, worst_cases
from medseg.infer.heldout import read_prediction
from medseg.infer.sliding import image_spacing
from medseg.io.atomic import atomic_path
from medseg.io.case import Case
from medseg.io.names import file_stem, inside
from medseg.io.segment_codes import PALETTE
from medseg.transforms.steps import load_transforms

SOFT_TISSUE = (-160.0, 240.0)  # HU: window 400, level 40
DRAWN = 1024  # longest side drawn, pixels or voxels: a 9-inch figure at 72 dpi shows fewer
PLANES = ("axial", "coronal", "sagittal")


def turn(plane: np.ndarray) -> np.ndarray:
    """A RAS plane as shown: first array axis across (patient's right on the left), second up."""
    return np.rot90(plane)[:, ::-1]


def display_slice(image: np.ndarray, ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """2D pictures of one case: (H, W[, C]) image, reference and prediction; 3D: the axial slice
    with the most reference foreground (the prediction's when the reference is empty)."""
    if ref.ndim == 2:
        img = np.moveaxis(image, 0, -1)
        return (img[..., 0] if img.shape[-1] == 1 else img), ref, pred
    counts = ref.reshape(-1, ref.shape[-1]).sum(0) if ref.any() else pred.reshape(-1, pred.shape[-1]).sum(0)
    z = int(np.argmax(counts))
    return turn(image[0][..., z]), turn(ref[..., z]), turn(pred[..., z])


def centre(ref: np.ndarray, pred: np.ndarray) -> tuple[int, ...]:
    """Voxel index of the centre of the reference structure, else the prediction's, else the volume's."""
    for mask in (ref > 0, pred > 0):
        if mask.any():
            return tuple(int(round(float(c.mean()))) for c in np.nonzero(mask))
    return tuple(n // 2 for n in ref.shape)


def planes(volume: np.ndarray, at: tuple[int, ...]) -> list[np.ndarray]:
    """Axial, coronal and sagittal planes of a RAS volume through voxel ``at``, turned for display."""
    x, y, z = at
    return [turn(volume[:, :, z]), turn(volume[:, y, :]), turn(volume[x, :, :])]


def window(image: np.ndarray) -> tuple[float, float]:
    """Display range: the soft-tissue window for CT (values below -500 HU present), else percentiles."""
    if image.min() < -500:
        return SOFT_TISSUE
    lo, hi = np.percentile(image, (0.5, 99.5))
    return float(lo), float(max(hi, lo + 1e-6))


def colour_of(value: int) -> tuple[float, float, float]:
    """The class's colour, as in its DICOM SEG segment (the built-in palette)."""
    r, g, b = PALETTE[(value - 1) % len(PALETTE)]
    return (r / 255, g / 255, b / 255)


def _draw(ax: Any, picture: np.ndarray, mask: np.ndarray | None, names: dict[int, str], **show: Any) -> None:
    ax.imshow(picture, interpolation="nearest", **show)
    for value in names if mask is not None else []:
        region = np.asarray(mask) == value
        if region.any():
            ax.contour(region.astype(float), levels=[0.5], colors=[colour_of(value)], linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])


def overlay_figure(
    image: np.ndarray,
    ref: np.ndarray,
    pred: np.ndarray,
    names: dict[int, str],
    title: str,
    spacing: list[float] | None = None,
    channel: int = 0,
) -> Any:
    """The overlay figure of one case.

    Args:
        image: (C, *spatial) image as loaded (pictures scaled to [0, 1]).
        ref: reference classes (ignore value set to 0).
        pred: predicted classes.
        names: foreground class names by value.
        title: the caption (case, Dice per class).
        spacing: voxel size (3D aspect ratios).
        channel: the channel drawn (a 3-channel picture is drawn in colour).

    Returns:
        A matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ref.ndim == 2:
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.0), squeeze=False, layout="constrained")
        colour = image.shape[0] == 3
        img = np.clip(np.moveaxis(image, 0, -1), 0, 1) if colour else image[min(channel, len(image) - 1)]
        show = {} if colour else {"cmap": "gray"}
        for ax, mask, name in zip(
            axes[0], (None, ref, pred), ("image", "reference", "prediction"), strict=True
        ):
            _draw(ax, img, mask, names, **show)
            ax.set_title(name, fontsize=9)
    else:
        at = centre(ref, pred)
        sx, sy, sz = spacing or [1.0, 1.0, 1.0]
        aspects = (sy / sx, sz / sx, sz / sy)
        shown = image[min(channel, len(image) - 1)]
        lo, hi = window(shown)
        fig, axes = plt.subplots(2, 3, figsize=(9, 6.6), squeeze=False, layout="constrained")
        for row, (mask, name) in enumerate(((ref, "reference"), (pred, "prediction"))):
            pics, masks = planes(shown, at), planes(mask, at)
            for col, plane in enumerate(PLANES):
                ax = axes[row, col]
                _draw(ax, pics[col], masks[col], names, cmap="gray", vmin=lo, vmax=hi, aspect=aspects[col])
                index = at[2 - col]  # axial: z, coronal: y, sagittal: x
                ax.set_title(f"{name}: {plane} slice {index}", fontsize=9)
    handles = [Patch(color=colour_of(v), label=n) for v, n in names.items()]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False
    )
    fig.suptitle(title, fontsize=10)
    return fig


def write_overlays(
    cfg: PipelineConfig,
    cases: list[Case],
    rows: list[Row],
    fold_overlays: Path,
    predictions: Callable[[str], Path],
    keep: set[str] | frozenset[str] = frozenset(),
) -> list[Path]:
    """Overlays of a fold's held-out cases (``evaluate.overlays``), replacing earlier ones.

    Args:
        cfg: the resolved configuration.
        cases: the fold's held-out cases.
        rows: their metrics rows.
        fold_overlays: the folder the pictures go to.
        predictions: case id -> the prediction file.
        keep: ids of cases whose overlay, where there is one, still shows their prediction and
            scores (drawn before a post-processing that left them alone): not drawn again.

    Returns:
        The PNG files of the chosen cases.
    """
    import matplotlib.pyplot as plt
    from monai.transforms import Compose

    chosen = [] if cfg.evaluate.overlays == "none" else [c.id for c in cases]
    if cfg.evaluate.overlays == "worst":
        chosen = worst_cases(rows, cfg.evaluate.n_worst)
    kept = _clear(fold_overlays, {file_stem(c) for c in chosen if c in keep})
    by_id = {c.id: c for c in cases}
    load = Compose(load_transforms(cfg.data, cfg.transforms))
    out = []
    for case_id in chosen:
        path = inside(fold_overlays, f"{file_stem(case_id)}.png")
        if path in kept:
            out.append(path)
            continue
        with out_of_memory_named(f"overlay of held-out case {case_id}"):
            image, ref, spacing, step = _shown_case(cfg, load(by_id[case_id].item()))
            pred = shrink(read_prediction(predictions(case_id)), step)
            if cfg.transforms.spatial_dims == 2 and cfg.data.num_classes == 2:
                pred = (pred > 0).astype(np.uint8)
            dice = {r["class"]: r["dice"] for r in rows if r["case"] == case_id}
            title = f"{case_id}: " + ", ".join(f"{n} Dice {_fmt(d)}" for n, d in dice.items())
            fig = overlay_figure(
                image, ref, pred, cfg.class_names, title, spacing, cfg.evaluate.overlay_channel
            )
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=72)
            plt.close(fig)
        out.append(path)
    return out


def display_step(shape: tuple[int, ...]) -> int:
    """Every how many pixels (voxels) an overlay draws: the longest side at most :data:`DRAWN`.

    Example:
        >>> display_step((6000, 8000)), display_step((765, 573)), display_step((512, 512, 300))
        (8, 1, 1)
    """
    return max(1, -(-max(shape) // DRAWN))


def shrink(array: np.ndarray, step: int, spatial_dims: int | None = None) -> np.ndarray:
    """Every ``step``-th pixel (voxel) along the last ``spatial_dims`` axes (default: all) of
    ``array``, copied in its own dtype; ``array`` itself when ``step`` is 1.

    Example:
        >>> shrink(np.zeros((3, 60, 80), np.float32), 8, 2).shape
        (3, 8, 10)
    """
    array = np.asarray(array)
    if step == 1:
        return array
    n = array.ndim if spatial_dims is None else spatial_dims
    every: tuple[Any, ...] = (Ellipsis, *[slice(None, None, step)] * n)
    return np.array(array[every])


def _shown_case(
    cfg: PipelineConfig, item: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[float] | None, int]:
    """(image, reference with the ignore value as background, spacing, step) of a loaded case, each
    spatial axis thinned to what the figure shows (every ``step``-th pixel: :func:`display_step`),
    the label in its own dtype."""
    label = np.asarray(item["label"])[0]
    step = display_step(label.shape)
    ref = shrink(label, step)
    image = shrink(np.asarray(item["image"], dtype=np.float32), step, label.ndim)
    spacing = image_spacing(item["image"])
    if cfg.data.ignore_value is not None:
        ref = np.where(ref == cfg.data.ignore_value, 0, ref).astype(ref.dtype)
    return image, ref, None if spacing is None else [s * step for s in spacing], step


def _clear(folder: Path, keep: set[str]) -> set[Path]:
    """Remove what ``folder`` holds but the overlays named by the ``keep`` stems; those kept."""
    kept = set()
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and path.suffix == ".png" and path.name[: -len(".png")] in keep:
                kept.add(path)
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return kept


def _fmt(dice: float) -> str:
    return "nan" if math.isnan(dice) else f"{dice:.3f}"
