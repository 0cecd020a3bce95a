"""``configs/metadata.json`` of a study's MONAI bundle, and a JSON schema to check it offline.

The keys are the MONAI Bundle Specification's (``version``, ``monai_version``,
``pytorch_version``, ``numpy_version``, ``required_packages_version``, ``task``, ``description``,
``authors``, ``copyright``, ``network_data_format``) and the model zoo's usual extras
(``optional_packages_version``, ``name``, ``data_source``, ``data_type``, ``*_classes``,
``eval_metrics``, ``intended_use``), plus ``medseg``: the run, MLflow runs and folds the bundle
comes from.

``schema`` names MONAI's own schema, which ``monai.bundle verify_metadata`` downloads by default;
``configs/metadata_schema.json`` holds the specification's mandatory keys and tensor fields as a
JSON schema, for ``verify_metadata --filepath configs/metadata_schema.json`` where nothing can be
downloaded (an existing ``filepath`` is used as it is).
"""

from __future__ import annotations

from importlib import metadata as dist
from typing import Any

from medseg.config.models import PipelineConfig

MONAI_SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
VERSION = "0.1.0"
MANDATORY = [
    "version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
    "task", "description", "authors", "copyright", "network_data_format",
]  # fmt: skip
TENSOR_KEYS = ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
               "channel_def"]  # fmt: skip
PLACEHOLDER = "not filled in: edit configs/metadata.json before sharing the bundle"


def package_version(name: str) -> str:
    """The installed version of a distribution, without a local build tag (``2.13.0+cpu`` -> ``2.13.0``)."""
    try:
        return dist.version(name).split("+")[0]
    except dist.PackageNotFoundError:
        return "not installed"


def input_channels(cfg: PipelineConfig, in_channels: int) -> dict[str, str]:
    """What each input channel holds."""
    windows = [item["CTWindowd"] for item in cfg.transforms.preprocess if "CTWindowd" in item]
    if windows:
        names = (windows[0] or {}).get("windows", ["soft_tissue"])
        return {str(k): f"CT window {w}" for k, w in enumerate(names)}
    if in_channels == 3 and cfg.transforms.spatial_dims == 2:
        return {"0": "red", "1": "green", "2": "blue"}
    return {str(k): "image" if in_channels == 1 else f"channel {k}" for k in range(in_channels)}


def tensor(kind: str, fmt: str, channels: int, shape: list[Any], names: dict[str, str], **extra: Any) -> dict:
    """A tensor format specifier of ``network_data_format``."""
    return {"type": kind, "format": fmt, "num_channels": channels, "spatial_shape": shape, "dtype": "float32",
            "value_range": [], "is_patch_data": True, "channel_def": names, **extra}  # fmt: skip


def data_format(cfg: PipelineConfig, in_channels: int, n_folds: int, modality: str) -> dict[str, Any]:
    """``network_data_format``: the network's input window and output channels, and the written
    label map (``post_processed_outputs``)."""
    classes = {"0": "background", **{str(k): v for k, v in cfg.class_names.items()}}
    roi = list(cfg.roi_size)
    hu = modality == "CT" and not any("CTWindowd" in i for i in cfg.transforms.preprocess)
    image = tensor("image", "hounsfield" if hu else "magnitude", in_channels, roi,
                   input_channels(cfg, in_channels), modality=modality)  # fmt: skip
    pred = tensor("image", "logits", n_folds * cfg.data.num_classes, roi, classes)
    label = tensor(
        "image", "segmentation", 1, ["*"] * len(roi), classes, value_range=[0, cfg.data.num_classes - 1]
    )
    label.update(dtype="uint8", is_patch_data=False)
    return {"inputs": {"image": image}, "outputs": {"pred": pred}, "post_processed_outputs": {"pred": label}}


def metadata(cfg: PipelineConfig, info: dict[str, Any]) -> dict[str, Any]:
    """The whole ``metadata.json``.

    Args:
        cfg: the study's configuration.
        info: ``in_channels``, ``n_folds``, ``modality``, ``kind`` (``nifti`` or ``picture``),
            ``metrics`` (``eval_metrics``), ``data_source`` and ``medseg`` (the run and MLflow runs).
    """
    n, kind = info["n_folds"], info["kind"]
    names = ", ".join(cfg.class_names.values())
    dims = cfg.transforms.spatial_dims
    reader = (
        {"nibabel": package_version("nibabel")} if kind == "nifti" else {"pillow": package_version("pillow")}
    )
    return {
        "schema": MONAI_SCHEMA,
        "version": VERSION,
        "changelog": {
            VERSION: f"exported by medseg {info['medseg']['medseg_version']} from run {info['medseg']['run']}"
        },
        "monai_version": package_version("monai"),
        "pytorch_version": package_version("torch"),
        "numpy_version": package_version("numpy"),
        "required_packages_version": {**reader, "pytorch-ignite": package_version("pytorch-ignite")},
        "optional_packages_version": {
            "fire": package_version("fire"),
            "jsonschema": package_version("jsonschema"),
        },
        "name": f"{cfg.name} segmentation",
        "task": f"{dims}D segmentation of {names} ({info['modality']})",
        "description": (
            f"The {n}-fold ensemble of the medseg study '{cfg.name}' ({cfg.model.name}): sliding-window "
            "inference with every fold, the mean of their softmax, argmax, the study's post-processing"
        ),
        "authors": PLACEHOLDER,
        "copyright": PLACEHOLDER,
        "data_source": info["data_source"],
        "data_type": "nibabel" if kind == "nifti" else "pillow",
        "image_classes": f"{info['in_channels']} channel(s) as inference.json prepares them",
        "label_classes": ", ".join(f"{k}: {v}" for k, v in {0: "background", **cfg.class_names}.items()),
        "pred_classes": (
            f"{n * cfg.data.num_classes} channels: the logits of fold 0 for classes "
            f"0..{cfg.data.num_classes - 1} "
            "(named by channel_def), then those of each further fold; the post-processing blends no "
            "channel across folds before each fold's softmax"
        ),
        "eval_metrics": info["metrics"],
        "intended_use": "Research only; not for diagnostic use",
        "references": [],
        "network_data_format": data_format(cfg, info["in_channels"], n, info["modality"]),
        "medseg": info["medseg"],
    }


def schema() -> dict[str, Any]:
    """The MONAI Bundle Specification's mandatory metadata keys and tensor fields as a JSON schema."""
    tensor_spec = {
        "type": "object",
        "required": TENSOR_KEYS,
        "properties": {
            "type": {"type": "string"},
            "format": {"type": "string"},
            "modality": {"type": "string"},
            "num_channels": {"type": "integer", "minimum": 1},
            "spatial_shape": {"type": "array", "items": {"type": ["integer", "string"]}},
            "dtype": {"type": "string"},
            "value_range": {"type": "array", "items": {"type": "number"}},
            "is_patch_data": {"type": "boolean"},
            "channel_def": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    tensors = {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/definitions/tensor"}}
    text = {"type": "string"}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "MONAI bundle metadata: the mandatory keys of the MONAI Bundle Specification",
        "type": "object",
        "required": MANDATORY,
        "definitions": {"tensor": tensor_spec},
        "properties": {
            **{k: text for k in ("version", "monai_version", "pytorch_version", "numpy_version", "task",
                                 "description", "authors", "copyright")},
            "required_packages_version": {"type": "object", "additionalProperties": text},
            "optional_packages_version": {"type": "object", "additionalProperties": text},
            "changelog": {"type": "object", "additionalProperties": text},
            "network_data_format": {
                "type": "object",
                "required": ["inputs", "outputs"],
                "properties": {"inputs": tensors, "outputs": tensors, "post_processed_outputs": tensors},
            },
        },
    }  # fmt: skip
