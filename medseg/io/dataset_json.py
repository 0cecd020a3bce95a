"""The ``dataset.json`` of an nnU-Net v2 data set or of a Medical Segmentation Decathlon task.

nnU-Net v2 (``DatasetXXX_Name/``): ``channel_names`` (``{"0": "T1", "1": "T2"}``), ``labels``
as name -> value (``{"background": 0, "liver": 1}``; an ``ignore`` label marks unlabelled voxels),
``numTraining``, ``file_ending``, and optionally ``dataset`` (explicit file lists per case). Images
are ``imagesTr/{CASE}_{XXXX}{ending}``, one file per channel (an RGB picture is one file of three),
labels ``labelsTr/{CASE}{ending}``. Region-based labels (a list of values per name) are refused.

Decathlon: ``modality`` (``{"0": "FLAIR", ...}``), ``labels`` as value -> name, and ``training``,
a list of ``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}`` whose images hold
every channel in one 4D NIfTI file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import DataError

NAME = "dataset.json"
# the file endings nnU-Net reads that medseg reads too
ENDINGS = (".nii.gz", ".nii", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class DatasetInfo:
    """What a ``dataset.json`` says, in one shape for both layouts.

    Attributes:
        layout: ``nnunet`` or ``decathlon``.
        channel_names: the name of each input channel, in order (nnU-Net normalises a ``CT``
            channel by the global foreground statistics, every other by z-score per image).
        labels: foreground class name -> label value, in value order.
        ignore_value: nnU-Net's ``ignore`` label, or None.
        file_ending: the suffix of every image and label file.
        num_training: the number of training cases the file announces, if it does.
        training: explicit (image files, label file) per case id (Decathlon ``training``, nnU-Net
            ``dataset``), paths relative to the data set folder; None: found in the folders.
    """

    layout: str
    channel_names: tuple[str, ...]
    labels: dict[str, int]
    ignore_value: int | None = None
    file_ending: str = ".nii.gz"
    num_training: int | None = None
    training: dict[str, tuple[list[str], str]] | None = field(default=None)


def detect_layout(root: Path) -> str | None:
    """``nnunet`` or ``decathlon`` from the ``dataset.json`` in ``root``, or None without one.

    Example:
        >>> detect_layout(Path("/nonexistent")) is None
        True
    """
    path = Path(root) / NAME
    if not path.is_file():
        return None
    data = _read(path)
    if "channel_names" in data:
        return "nnunet"
    return "decathlon" if "modality" in data and "training" in data else None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_dataset_json(root: Path, layout: str) -> DatasetInfo:
    """The ``dataset.json`` in ``root`` read as ``layout`` (``nnunet`` or ``decathlon``).

    Raises:
        DataError: the file is missing, malformed, lacks a key, uses region-based labels or a
            file ending medseg does not read; the message names the file and the key.
    """
    path = Path(root) / NAME
    if not path.is_file():
        raise DataError(f"data.root: {path} not found; an {layout} data set has its dataset.json at the top")
    data = _read(path)
    return _nnunet(data, path) if layout == "nnunet" else _decathlon(data, path)


def _channels(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, dict) or not value:
        raise DataError(f'{path}: \'{key}\' must map channel numbers to names, such as {{"0": "T1"}}')
    try:
        numbered = sorted((int(k), str(v)) for k, v in value.items())
    except ValueError:
        raise DataError(
            f"{path}: '{key}' keys must be channel numbers 0, 1, ...; found {sorted(value)}"
        ) from None
    if [n for n, _ in numbered] != list(range(len(numbered))):
        raise DataError(f"{path}: '{key}' must number its channels 0, 1, ..., {len(numbered) - 1}")
    return tuple(name for _, name in numbered)


def _nnunet(data: dict[str, Any], path: Path) -> DatasetInfo:
    missing = [k for k in ("channel_names", "labels", "file_ending") if k not in data]
    if missing:
        raise DataError(
            f"{path}: lacks {missing}; nnU-Net v2 needs channel_names, labels, numTraining, file_ending"
        )
    ending = str(data["file_ending"])
    if ending.lower() not in ENDINGS:
        raise DataError(
            f"{path}: file_ending '{ending}': medseg reads {', '.join(ENDINGS)}; convert the images "
            "(nnU-Net's own readers take the same files)"
        )
    labels, ignore = _nnunet_labels(data["labels"], path)
    explicit = None
    if isinstance(data.get("dataset"), dict):
        explicit = {
            str(k): ([str(i) for i in v["images"]], str(v["label"])) for k, v in data["dataset"].items()
        }
    n = data.get("numTraining")
    return DatasetInfo(
        "nnunet", _channels(data["channel_names"], path, "channel_names"), labels, ignore, ending, n, explicit
    )


def _nnunet_labels(value: Any, path: Path) -> tuple[dict[str, int], int | None]:
    if not isinstance(value, dict) or not value:
        raise DataError(
            f'{path}: \'labels\' must map class names to values, such as {{"background": 0, "liver": 1}}'
        )
    regions = [k for k, v in value.items() if isinstance(v, list | tuple)]
    if regions or "regions_class_order" in value:
        raise DataError(
            f"{path}: labels {regions} are regions (several values each), nnU-Net's region-based training; "
            "medseg trains one class per value: give each label one value"
        )
    try:
        values = {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' values must be integers, such as {{\"liver\": 1}}") from None
    ignore = values.pop("ignore", None)
    if values.get("background") != 0:
        raise DataError(f"{path}: 'labels' needs \"background\": 0 (nnU-Net's rule)")
    fg = dict(sorted(((k, v) for k, v in values.items() if k != "background"), key=lambda kv: kv[1]))
    if sorted(fg.values()) != list(range(1, len(fg) + 1)):
        raise DataError(
            f"{path}: label values {sorted(values.values())} must be consecutive 0, 1, 2, ... "
            "(nnU-Net's rule)"
        )
    if ignore is not None and ignore != len(fg) + 1:
        raise DataError(f"{path}: the ignore label must be the highest value ({len(fg) + 1}), not {ignore}")
    return fg, ignore


def _decathlon(data: dict[str, Any], path: Path) -> DatasetInfo:
    missing = [k for k in ("modality", "labels", "training") if k not in data]
    if missing:
        raise DataError(
            f"{path}: lacks {missing}; a Decathlon dataset.json has modality, labels and training"
        )
    try:
        values = {str(name): int(v) for v, name in data["labels"].items()}
    except (AttributeError, TypeError, ValueError):
        raise DataError(
            f'{path}: \'labels\' must map values to names, such as {{"0": "background", "1": "liver"}}'
        ) from None
    fg = dict(sorted(((k, v) for k, v in values.items() if v != 0), key=lambda kv: kv[1]))
    if sorted(fg.values()) != list(range(1, len(fg) + 1)):
        raise DataError(f"{path}: label values {sorted(values.values())} must be consecutive 0, 1, 2, ...")
    training: dict[str, tuple[list[str], str]] = {}
    for i, entry in enumerate(data["training"]):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise DataError(f"{path}: training[{i}] needs 'image' and 'label'")
        name = Path(str(entry["image"])).name
        case_id = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
        training[case_id] = ([str(entry["image"])], str(entry["label"]))
    return DatasetInfo(
        "decathlon",
        _channels(data["modality"], path, "modality"),
        fg,
        None,
        ".nii.gz",
        data.get("numTraining"),
        training,
    )


def channels_differ(folder: Path, names: list[str] | None) -> str | None:
    """Why inputs under ``folder`` (a data set, or its ``imagesTs``) cannot go to a model trained
    on channels ``names``: the ``dataset.json`` beside them names other channels, or the same in
    another order. None when there is no ``dataset.json`` or it agrees.

    Example:
        >>> channels_differ(Path("/nonexistent/imagesTs"), ["T1", "T2"]) is None
        True
    """
    for place in (Path(folder), Path(folder).parent):
        layout = detect_layout(place)
        if layout is None:
            continue
        found = list(read_dataset_json(place, layout).channel_names)
        if names is not None and found != list(names):
            return (
                f"{place / NAME}: the data set's channels are {found}, the model's {list(names)} (in this "
                "order); give inputs with the model's channels in its order"
            )
        return None
    return None
