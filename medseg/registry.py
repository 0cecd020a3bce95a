"""Explicit name -> component maps for networks, losses, transforms and the inferer; no eval, no
imports by string.

Every component's arguments are bound to its signature (``inspect.signature(cls).bind``) when the
configuration loads (:mod:`medseg.config.load`), so a misspelt or invalid argument fails before any
data is read, with the key that is wrong. The ``build_*`` functions turn a resolved configuration
into the objects the stages use.
"""

from __future__ import annotations

import difflib
import enum
import inspect
from collections.abc import Callable
from typing import Any

from medseg.config.models import ComponentConfig, InferConfig, NetworkSpec, TransformList
from medseg.errors import ConfigError
from medseg.transforms.intensity import ClipZScored, CTWindowd, ZScored
from medseg.transforms.keys import IMAGE_KEY, LABEL_KEY, ROLE_MODE, role_modes

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


# medseg's own dictionary transforms, all intensity stages
MEDSEG_TRANSFORMS: dict[str, Callable[..., Any]] = {
    "CTWindowd": CTWindowd,
    "ClipZScored": ClipZScored,
    "ZScored": ZScored,
}


def network_class(name: str) -> Callable[..., Any]:
    """The MONAI network called ``name``; ConfigError with the names known otherwise."""
    from monai.networks import nets

    if name not in NETWORK_DEFAULTS:
        raise ConfigError(_unknown("model.name", name, NETWORK_DEFAULTS))
    return getattr(nets, name)


def loss_class(name: str) -> Callable[..., Any]:
    """The MONAI loss called ``name``; ConfigError with the names known otherwise."""
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


def transform_class(name: str, where: str) -> tuple[Callable[..., Any], str]:
    """The dictionary transform called ``name`` and its kind, ``spatial`` or ``intensity``."""
    from monai import transforms

    if name in MEDSEG_TRANSFORMS:
        return MEDSEG_TRANSFORMS[name], "intensity"
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
    """Build ``cls(**args)``; its refusal becomes a ConfigError naming ``where``."""
    try:
        return cls(**args)
    except Exception as err:  # a component refusing its arguments is a configuration error
        raise ConfigError(f"{where}: {cls.__name__} refused these arguments: {err}") from None


def network_args(spec: NetworkSpec) -> dict[str, Any]:
    """Every argument of the configured network, those derived from data and transforms included."""
    name = spec.model.name
    cls = network_class(name)
    args = {**NETWORK_DEFAULTS[name], **spec.model.args}
    if args.get("pretrained"):
        raise ConfigError("model.args.pretrained: weights are never downloaded; set pretrained: false")
    if args.get("deep_supervision") and name != "DynUNet":
        raise ConfigError("model.args.deep_supervision: only DynUNet's is supported; set it to false")
    auto = {
        "spatial_dims": spec.spatial_dims,
        "in_channels": spec.in_channels,
        "out_channels": spec.out_channels,
    }
    for key, value in auto.items():
        if key in args and args[key] != value:
            raise ConfigError(f"model.args.{key}: set from the data and transforms ({value}); remove it")
        args[key] = value
    return bind_args(cls, args, "model.args")


def loss_args(loss: ComponentConfig) -> dict[str, Any]:
    """Every argument of the configured loss, medseg's defaults included."""
    cls = loss_class(loss.name)
    return bind_args(cls, {**LOSS_DEFAULTS[loss.name], **loss.args}, "train.loss.args")


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


def build_network(spec: NetworkSpec) -> Any:
    """The configured network, weights freshly initialised.

    Args:
        spec: the ``model`` section and the sizes the data fix (``PipelineConfig.network``).

    Returns:
        The MONAI network.
    """
    return network_class(spec.model.name)(**network_args(spec))


def build_chain(items: TransformList, section: str) -> list[Any]:
    """Instantiate a configured list of dictionary transforms such as ``transforms.train``.

    Args:
        items: the configured transforms, arguments bound.
        section: the config key, for errors.

    Returns:
        The MONAI transform objects, in order.

    Raises:
        ConfigError: a transform refuses its arguments.
    """
    out = []
    for i, item in enumerate(items):
        ((name, args),) = item.items()
        cls, bound = transform_args(name, args or {}, f"transforms.{section}[{i}].{name}")
        out.append(cls(**bound))
    return out


def build_inferer(infer: InferConfig, roi_size: list[int]) -> Any:
    """MONAI's sliding-window inferer with the ``infer`` settings over the window ``roi_size``
    (``PipelineConfig.roi_size``: ``infer.roi_size`` or the network input size).

    Returns:
        A ``monai.inferers.SlidingWindowInferer``.
    """
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(
        roi_size=roi_size, sw_batch_size=infer.sw_batch_size, overlap=infer.overlap, mode=infer.mode
    )


def yaml_safe(value: Any) -> Any:
    """YAML-safe copy: enums to values, tuples to lists, dtypes to their names."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, type) or type(value).__module__ in ("numpy", "torch"):
        import numpy as np

        return str(np.dtype(value))
    if isinstance(value, dict):
        return {k: yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [yaml_safe(v) for v in value]
    return value


def _unknown(where: str, name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
    return f"{where}: unknown name '{name}', {hint}"
