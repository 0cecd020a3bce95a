"""Explicit name -> component maps for networks, losses and transforms; no eval, no imports by string.

Every component's arguments are bound to its signature (``inspect.signature(cls).bind``) and the
component is built once when the configuration loads, so a misspelt or invalid argument fails
before any data is read, with the key that is wrong.
"""

from __future__ import annotations

import difflib
import enum
import inspect
from collections.abc import Callable
from typing import Any

from medseg.config import ComponentConfig, PipelineConfig
from medseg.errors import ConfigError

IMAGE_KEY = "image"
LABEL_KEY = "label"
ROLE_MODE = {IMAGE_KEY: "bilinear", LABEL_KEY: "nearest"}
# Transforms built on F.interpolate: its legacy "nearest" samples half a pixel away from "bilinear"
# (floor of dst * scale), so labels use "nearest-exact", which samples the same centres.
INTERPOLATE_TRANSFORMS = ("Resized", "Zoomd", "RandZoomd")
INTERPOLATE_ROLE_MODE = {IMAGE_KEY: "bilinear", LABEL_KEY: "nearest-exact"}

# Arguments a network needs that have no default in MONAI, chosen for 2D images of a few hundred pixels.
NETWORK_DEFAULTS: dict[str, dict[str, Any]] = {
    "UNet": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
    "AttentionUnet": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]},
    "DynUNet": {
        "kernel_size": [3, 3, 3, 3, 3],
        "strides": [1, 2, 2, 2, 2],
        "upsample_kernel_size": [2, 2, 2, 2],
    },
    "FlexibleUNet": {"backbone": "efficientnet-b0", "pretrained": False},
    "BasicUNet": {},
    "SegResNet": {},
}

# Network arguments always derived from the data and transforms settings.
DERIVED_NETWORK_ARGS = ("spatial_dims", "in_channels", "out_channels")

# Arguments medseg sets on a loss because the networks emit one logit channel per class.
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "DiceCE": {"to_onehot_y": True, "softmax": True},
    "DiceFocal": {"to_onehot_y": True, "softmax": True},
    "Dice": {"to_onehot_y": True, "softmax": True},
    "Tversky": {"to_onehot_y": True, "softmax": True},
    "Focal": {"to_onehot_y": True, "use_softmax": True},
}

SPATIAL_TRANSFORMS = [
    "RandFlipd",
    "RandRotate90d",
    "RandRotated",
    "RandAffined",
    "Rand2DElasticd",
    "Rand3DElasticd",
    "RandZoomd",
    "RandSpatialCropd",
    "RandCropByPosNegLabeld",
    "Flipd",
    "Rotate90d",
    "Rotated",
    "Affined",
    "Zoomd",
    "Resized",
    "SpatialPadd",
    "DivisiblePadd",
    "CenterSpatialCropd",
    "ResizeWithPadOrCropd",
]
INTENSITY_TRANSFORMS = [
    "NormalizeIntensityd",
    "ScaleIntensityd",
    "ScaleIntensityRanged",
    "ScaleIntensityRangePercentilesd",
    "RandGaussianNoised",
    "RandGaussianSmoothd",
    "RandScaleIntensityd",
    "RandShiftIntensityd",
    "RandAdjustContrastd",
    "RandHistogramShiftd",
    "RandBiasFieldd",
    "RandGaussianSharpend",
]


def network_class(name: str) -> Callable[..., Any]:
    from monai.networks import nets

    if name not in NETWORK_DEFAULTS:
        raise ConfigError(_unknown("model.name", name, NETWORK_DEFAULTS))
    return getattr(nets, name)


def loss_class(name: str) -> Callable[..., Any]:
    from monai import losses

    classes = {
        "DiceCE": losses.DiceCELoss,
        "DiceFocal": losses.DiceFocalLoss,
        "Dice": losses.DiceLoss,
        "Tversky": losses.TverskyLoss,
        "Focal": losses.FocalLoss,
    }
    if name not in classes:
        raise ConfigError(_unknown("train.loss.name", name, classes))
    return classes[name]


# medseg's own dictionary transforms (module, class), all intensity stages
MEDSEG_TRANSFORMS = {
    "CTWindowd": "medseg.transforms.intensity",
    "ClipZScored": "medseg.transforms.intensity",
}


def transform_class(name: str, where: str) -> tuple[Callable[..., Any], str]:
    """The dictionary transform called ``name`` and its kind, ``spatial`` or ``intensity``."""
    import importlib

    from monai import transforms

    if name in MEDSEG_TRANSFORMS:
        return getattr(importlib.import_module(MEDSEG_TRANSFORMS[name]), name), "intensity"
    if name in SPATIAL_TRANSFORMS:
        return getattr(transforms, name), "spatial"
    if name in INTENSITY_TRANSFORMS:
        return getattr(transforms, name), "intensity"
    raise ConfigError(
        _unknown(where, name, SPATIAL_TRANSFORMS + INTENSITY_TRANSFORMS + list(MEDSEG_TRANSFORMS))
    )


def bind_args(cls: Callable[..., Any], args: dict[str, Any], where: str) -> dict[str, Any]:
    """Bind ``args`` to ``cls``'s signature; return every argument, defaults included."""
    sig = inspect.signature(cls)
    params = [p for p in sig.parameters if p not in ("self", "args", "kwargs")]
    for key in args:
        if key not in sig.parameters:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"it takes: {', '.join(params)}"
            raise ConfigError(f"{where}.{key}: {cls.__name__} has no argument '{key}', {hint}")
    try:
        bound = sig.bind(**args)
    except TypeError as err:
        raise ConfigError(f"{where}: {cls.__name__}: {err}") from None
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k not in ("args", "kwargs")}


def instantiate(cls: Callable[..., Any], args: dict[str, Any], where: str) -> Any:
    try:
        return cls(**args)
    except Exception as err:  # a component refusing its arguments is a configuration error
        raise ConfigError(f"{where}: {cls.__name__} refused these arguments: {err}") from None


def network_args(cfg: PipelineConfig) -> dict[str, Any]:
    name = cfg.model.name
    cls = network_class(name)
    args = {**NETWORK_DEFAULTS[name], **cfg.model.args}
    if args.get("pretrained"):
        raise ConfigError("model.args.pretrained: weights are never downloaded; set pretrained: false")
    if args.get("deep_supervision"):
        raise ConfigError("model.args.deep_supervision: not supported by the training loop; set it to false")
    auto = {
        "spatial_dims": cfg.transforms.spatial_dims,
        "in_channels": cfg.data.in_channels,
        "out_channels": cfg.data.num_classes,
    }
    for key, value in auto.items():
        if key in args and args[key] != value:
            raise ConfigError(f"model.args.{key}: set from the data and transforms ({value}); remove it")
        args[key] = value
    return bind_args(cls, args, "model.args")


def loss_args(loss: ComponentConfig) -> dict[str, Any]:
    cls = loss_class(loss.name)
    return bind_args(cls, {**LOSS_DEFAULTS[loss.name], **loss.args}, "train.loss.args")


def role_modes(name: str, keys: list[str]) -> list[str]:
    """Interpolation mode per key from its role: bilinear for images, nearest for labels."""
    table = INTERPOLATE_ROLE_MODE if name in INTERPOLATE_TRANSFORMS else ROLE_MODE
    return [table[k] for k in keys]


def transform_args(name: str, args: dict[str, Any], where: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Fill ``keys`` and per-key interpolation modes from each key's role, then bind the arguments."""
    cls, kind = transform_class(name, where)
    args = dict(args)
    keys = args.get("keys", [IMAGE_KEY, LABEL_KEY] if kind == "spatial" else [IMAGE_KEY])
    keys = [keys] if isinstance(keys, str) else list(keys)
    for key in keys:
        if key not in ROLE_MODE:
            raise ConfigError(f"{where}.keys: unknown key '{key}'; use '{IMAGE_KEY}' and/or '{LABEL_KEY}'")
    if kind == "intensity" and LABEL_KEY in keys:
        raise ConfigError(f"{where}.keys: {name} changes intensities; labels are never normalised")
    args["keys"] = keys
    params = inspect.signature(cls).parameters
    if "mode" in params and "mode" not in args:
        args["mode"] = role_modes(name, keys)
    if "label_key" in params and "label_key" not in args:
        args["label_key"] = LABEL_KEY
    return cls, bind_args(cls, args, where)


def bind_components(cfg: PipelineConfig) -> PipelineConfig:
    """Check and fill every component's arguments; the result shows them all in ``validate --show``."""
    net_args = network_args(cfg)
    instantiate(network_class(cfg.model.name), net_args, "model.args")
    l_args = loss_args(cfg.train.loss)
    instantiate(loss_class(cfg.train.loss.name), l_args, "train.loss.args")
    for section in ("preprocess", "train"):
        chain = getattr(cfg.transforms, section)
        bound_chain = []
        for i, item in enumerate(chain):
            ((name, args),) = item.items()
            where = f"transforms.{section}[{i}].{name}"
            cls, bound = transform_args(name, args or {}, where)
            size = cfg.transforms.input_size
            if name in ("RandRotate90d", "Rotate90d") and len(set(size)) > 1:
                raise ConfigError(
                    f"{where}: 90-degree turns change the shape of non-square images "
                    f"(network input size {size}); use a square size or remove it"
                )
            instantiate(cls, bound, where)
            if name == "CTWindowd" and len(bound["windows"]) != cfg.data.in_channels:
                raise ConfigError(
                    f"{where}: stacks {len(bound['windows'])} window(s) as channels, so data.in_channels "
                    f"must be {len(bound['windows'])} (it is {cfg.data.in_channels})"
                )
            bound_chain.append({name: _plain(bound)})
        setattr(cfg.transforms, section, bound_chain)
    # derived from data and transforms on every load, so a saved config.yaml follows their overrides
    cfg.model.args = _plain({k: v for k, v in net_args.items() if k not in DERIVED_NETWORK_ARGS})
    cfg.train.loss.args = _plain(l_args)
    return cfg


def _plain(value: Any) -> Any:
    """YAML-safe copy: enums to values, tuples to lists, dtypes to their names."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, type) or type(value).__module__ in ("numpy", "torch"):
        import numpy as np

        return str(np.dtype(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unknown(where: str, name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
    return f"{where}: unknown name '{name}', {hint}"


def read_channels(cfg: PipelineConfig) -> int:
    """Channels each image file must have: 1 when CT windows make the channels, else data.in_channels."""
    windows = [item for item in cfg.transforms.preprocess if "CTWindowd" in item]
    return 1 if windows else cfg.data.in_channels
