"""medseg's reading and preprocessing as MONAI transforms that the bundle config parser builds.

Every step maps onto MONAI transforms that compute the same values as medseg's own chain
(:func:`medseg.chains.read_transforms` and the model grid of :mod:`medseg.infer.sliding`):

- 3D volumes: NIfTI through nibabel (``LoadImaged`` with ``NibabelReader``), channel first and
  the closest canonical RAS+ orientation (``Orientationd``), values as stored.
- 2D pictures: Pillow (``PILReader``) with the EXIF orientation applied (its ``converter``), the
  axes turned to (rows, columns) (``Transposed``, undone when the prediction is written), 8-bit
  values scaled to [0, 1] by the same multiplication (``ScaleIntensityd`` with ``factor``).
- ``ClipZScored``: two ``ThresholdIntensityd`` (the clip) and ``NormalizeIntensityd`` with the
  study's mean and std; ``CTWindowd``: ``ScaleIntensityRanged`` per window, stacked as channels.
  MONAI's own intensity transforms are copied with their arguments.
- ``transforms.spatial_size``: ``Resized`` ((bi/tri)linear, the same ``interpolate`` call);
  ``transforms.spacing``: ``Spacingd`` with ``scale_extent``, which samples medseg's points
  when size x spacing / target is a whole number on every axis.

A step with no such equivalent is refused with :class:`~medseg.errors.MedsegError` naming it, and
no bundle is written: mammography geometry, 2D NIfTI or DICOM images, pictures that are not 8-bit,
random transforms in ``transforms.preprocess``, test-time flips, and resampling to a spacing that
the study's own cases do not divide evenly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.io.case import Case
from medseg.io.readers import RASTER, reader_by_name
from medseg.registry import yaml_safe
from medseg.transforms.intensity import parse_window

IMAGE = "@image_key"
# MONAI intensity transforms copied into the bundle as configured (deterministic ones only)
COPIED = ("NormalizeIntensityd", "ScaleIntensityd", "ScaleIntensityRanged", "ScaleIntensityRangePercentilesd")
EIGHT_BIT_MODES = {"L", "LA", "P", "PA", "RGB", "RGBA"}
REFUSED = "; a bundle would predict differently from `medseg predict`, so none is written"

Step = dict[str, Any]


def image_kind(cfg: PipelineConfig, cases: list[Case]) -> str:
    """What the bundle reads: ``nifti`` volumes (3D) or 8-bit ``picture`` files (2D).

    Args:
        cfg: the study's configuration.
        cases: the verified cases of ``datalist.json`` (their image paths).

    Raises:
        MedsegError: mammography, 2D images that are not pictures, or pictures that are not 8-bit.
    """
    if cfg.data.mammography is not None:
        raise MedsegError(
            "data.mammography: the flip to one side, the breast crop and the size cap have no MONAI "
            "transform" + REFUSED + "; export with --format torchscript or onnx instead"
        )
    if cfg.transforms.spatial_dims == 3:
        return "nifti"
    for case in cases:
        for src in case.images:
            _check_picture(src.path)
    return "picture"


def _check_picture(path: Path) -> None:
    """Refuse a 2D training image the bundle's picture reading would read otherwise than medseg."""
    if reader_by_name(path) is not RASTER:
        raise MedsegError(
            f"{path}: a 2D image that is not a picture; medseg reads 2D NIfTI and DICOM as "
            "(rows, columns) with DICOM's VOI LUT and MONOCHROME1 rules, which the bundle does not map"
            + REFUSED
        )
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
    except OSError:
        return  # unreadable now: the mode of the files the model saw cannot be checked
    if mode not in EIGHT_BIT_MODES:
        raise MedsegError(
            f"{path}: a {mode} picture; medseg scales 8-bit and 16-bit pictures by their own maximum, "
            "the bundle scales by 255 only" + REFUSED
        )


def reading(kind: str) -> list[Step]:
    """Read an input file onto medseg's reference grid, intensities as medseg reads them."""
    if kind == "nifti":
        return [
            {"_target_": "LoadImaged", "keys": IMAGE, "reader": "NibabelReader"},
            {"_target_": "EnsureChannelFirstd", "keys": IMAGE},
            {
                "_target_": "Orientationd",
                "keys": IMAGE,
                "axcodes": "RAS",
                "labels": [["L", "R"], ["P", "A"], ["I", "S"]],
            },
        ]
    exif = {"_target_": "PIL.ImageOps.exif_transpose", "_mode_": "callable"}
    return [
        {"_target_": "LoadImaged", "keys": IMAGE, "reader": "PILReader", "converter": exif},
        {"_target_": "EnsureChannelFirstd", "keys": IMAGE},
        {
            "_target_": "Transposed",
            "keys": IMAGE,
            "indices": [0, 2, 1],
            "_desc_": "(rows, columns) as medseg",
        },
        {"_target_": "ScaleIntensityd", "keys": IMAGE, "minv": None, "maxv": None, "factor": 1 / 255 - 1},
    ]


def intensity(cfg: PipelineConfig) -> list[Step]:
    """``transforms.preprocess`` as MONAI transforms.

    Raises:
        MedsegError: a step with no exact MONAI equivalent, or statistics that were never gathered.
    """
    steps: list[Step] = []
    for i, item in enumerate(cfg.transforms.preprocess):
        ((name, args),) = item.items()
        args = dict(args or {})
        where = f"transforms.preprocess[{i}].{name}"
        if name == "ClipZScored":
            steps += _clip_zscore(args, where)
        elif name == "CTWindowd":
            steps += _windows([parse_window(w) for w in args.get("windows", ["soft_tissue"])])
        elif name in COPIED:
            kept = {k: v for k, v in args.items() if k not in ("keys", "allow_missing_keys")}
            steps.append({"_target_": name, "keys": IMAGE, **yaml_safe(kept)})
        else:
            raise MedsegError(f"{where}: not a deterministic intensity step the bundle can map" + REFUSED)
    return steps


def _clip_zscore(args: dict[str, Any], where: str) -> list[Step]:
    values = [float(v) for k in ("lower", "upper", "mean", "std") if (v := args.get(k)) is not None]
    if len(values) < 4:
        raise MedsegError(f"{where}: no statistics yet; export a run folder whose ingest has finished")
    lower, upper, mean, std = values
    return [
        {"_target_": "ThresholdIntensityd", "keys": IMAGE, "threshold": upper, "above": False, "cval": upper},
        {"_target_": "ThresholdIntensityd", "keys": IMAGE, "threshold": lower, "above": True, "cval": lower},
        {"_target_": "NormalizeIntensityd", "keys": IMAGE, "subtrahend": mean, "divisor": std},
    ]


def _windows(windows: list[tuple[float, float]]) -> list[Step]:
    """One ``ScaleIntensityRanged`` per HU window, the windows stacked as channels."""
    names = [IMAGE] + [f"window_{k}" for k in range(1, len(windows))]
    steps: list[Step] = []
    if len(windows) > 1:
        steps.append({"_target_": "CopyItemsd", "keys": IMAGE, "times": len(windows) - 1, "names": names[1:]})
    for key, (width, level) in zip(names, windows, strict=True):
        low, high = level - width / 2, level + width / 2
        steps.append(
            {"_target_": "ScaleIntensityRanged", "keys": key, "a_min": low, "a_max": high,
             "b_min": 0.0, "b_max": 1.0, "clip": True}
        )  # fmt: skip
    if len(windows) > 1:
        steps.append({"_target_": "ConcatItemsd", "keys": names, "name": IMAGE, "dim": 0})
        steps.append({"_target_": "DeleteItemsd", "keys": names[1:]})
    return steps


def model_grid(cfg: PipelineConfig, cases: list[Case]) -> list[Step]:
    """From the reference grid to the model grid, as :func:`medseg.infer.sliding.model_grid`.

    Raises:
        MedsegError: a target spacing that some of the study's cases do not divide evenly.
    """
    t = cfg.transforms
    if t.spatial_size is not None:
        mode = "trilinear" if len(t.spatial_size) == 3 else "bilinear"
        return [
            {"_target_": "Resized", "keys": IMAGE, "spatial_size": list(t.spatial_size), "mode": mode,
             "align_corners": False, "anti_aliasing": False}
        ]  # fmt: skip
    if t.spacing is None:
        return []
    _check_whole(t.spacing, cases)
    return [
        {"_target_": "Spacingd", "keys": IMAGE, "pixdim": list(t.spacing), "mode": "bilinear",
         "padding_mode": "border", "align_corners": True, "scale_extent": True}
    ]  # fmt: skip


def _check_whole(target: list[float], cases: list[Case]) -> None:
    """Refuse unless size x spacing / target is whole on every axis of every case."""
    for case in cases:
        shape, spacing = case.shape, case.spacing
        if shape is None or spacing is None:
            continue
        for n, s, t in zip(shape, spacing, target, strict=False):
            size = n * s / t
            if not math.isclose(size, round(size), abs_tol=1e-6):
                raise MedsegError(
                    f"transforms.spacing {target}: case {case.id} has {n} voxels of {s:g} mm, "
                    f"{size:.3f} at {t:g} mm. medseg resamples it to {max(1, round(size))} voxels "
                    "spanning the same extent, MONAI's Spacingd keeps the spacing exact; they sample "
                    "the same points only when size x spacing / target is whole" + REFUSED
                )


def preprocessing(cfg: PipelineConfig, cases: list[Case]) -> tuple[str, list[Step]]:
    """(what the bundle reads, its preprocessing transforms), or a MedsegError naming the step
    that has no exact MONAI equivalent."""
    if cfg.infer.tta_flips:
        raise MedsegError(
            "infer.tta_flips: MONAI has no inferer averaging flips" + REFUSED
            + "; to export without them, add --set infer.tta_flips=false"
        )  # fmt: skip
    kind = image_kind(cfg, cases)
    return kind, reading(kind) + intensity(cfg) + model_grid(cfg, cases)
