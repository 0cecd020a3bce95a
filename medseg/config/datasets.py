"""Settings an nnU-Net or Decathlon data set states itself: read from its ``dataset.json``.

A pipeline with ``data.layout: nnunet`` (or ``decathlon``) need not repeat the channels and
classes: when the pipeline leaves them out, ``data.channel_names``, ``data.in_channels``,
``data.labels``, ``data.num_classes`` and ``data.ignore_value`` are filled from the data set's
``dataset.json`` before validation, so the resolved ``config.yaml`` records them. Channels given
in the pipeline that disagree with the data set are refused; ``data.labels`` may pick a subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, DataError
from medseg.io.dataset_json import read_dataset_json


def with_dataset_json(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``raw`` with the unset channel and class settings of its data set filled in.

    Args:
        raw: the merged settings tree (paths already resolved).
        source: the pipeline file, for messages.

    Raises:
        ConfigError: the data set's ``dataset.json`` is unreadable, or names other channels than the
            pipeline.

    Example:
        >>> with_dataset_json({"data": {"root": "x", "layout": "table"}}, "p.yaml")["data"]["layout"]
        'table'
    """
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("layout") not in ("nnunet", "decathlon") or "root" not in data:
        return raw
    root = Path(str(data["root"]))
    if not root.is_dir():
        return raw  # ingest names the missing folder
    try:
        info = read_dataset_json(root, str(data["layout"]))
    except DataError as err:
        raise ConfigError(f"{source}: data.layout {data['layout']}: {err}") from None
    names = list(info.channel_names)
    if "channel_names" in data and list(data["channel_names"] or []) != names:
        raise ConfigError(
            f"{source}: data.channel_names {data['channel_names']} differ from {root / 'dataset.json'} "
            f"{names}; the channels are the data set's (leave data.channel_names out)"
        )
    filled = {"channel_names": names, "in_channels": len(names)}
    if not data.get("labels") and not data.get("class_names"):
        filled |= {"labels": dict(info.labels), "num_classes": len(info.labels) + 1}
    if info.ignore_value is not None:
        filled["ignore_value"] = info.ignore_value
    return {**raw, "data": {**filled, **data}}
