"""Label preparation: raw mask values to class indices, the ignore value kept as it is."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type


class PrepareLabel(Transform):
    """Map a raw mask to integer class indices.

    With ``select`` (one list of source values per class, in class order) those values become
    classes 1, 2, ... and every other value background: liver, spleen and kidneys picked out of a
    117-class map. Otherwise, two classes: any non-zero value is foreground (masks are checked at
    ingest to be {0,1} or {0,255}), or values above ``threshold`` when one is set; more classes:
    values are kept. The ignore value passes through untouched in every case.

    Args:
        num_classes: classes including background.
        threshold: foreground above this value (two classes only), or None.
        ignore_value: the label value passed through untouched.
        select: source values per class, or None.

    Example:
        >>> PrepareLabel(num_classes=2)(np.array([[0, 255], [255, 0]])).tolist()
        [[0, 1], [1, 0]]
        >>> PrepareLabel(3, select=[[5], [2, 3]])(np.array([5, 2, 3, 7, 0])).tolist()
        [1, 2, 2, 0, 0]
    """

    def __init__(
        self,
        num_classes: int = 2,
        threshold: float | None = None,
        ignore_value: int | None = None,
        select: list[list[int]] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.threshold = threshold
        self.ignore_value = ignore_value
        self.select = select

    def __call__(self, label: Any) -> Any:
        raw = torch.as_tensor(label) if isinstance(label, torch.Tensor) else torch.from_numpy(np.array(label))
        if raw.dtype in (torch.bool, torch.uint16, torch.uint32, torch.uint64):
            raw = raw.to(torch.int64)  # torch computes neither with these nor rounds booleans
        if self.select is not None:
            out = torch.zeros(raw.shape, dtype=torch.uint8)
            for index, values in enumerate(self.select, start=1):
                out[torch.isin(raw, torch.as_tensor(values, dtype=raw.dtype))] = index
        elif self.threshold is not None:
            out = (raw > self.threshold).to(torch.uint8)
        elif self.num_classes == 2:
            out = (raw > 0).to(torch.uint8)
        else:
            out = raw.round().to(torch.uint8)
        if self.ignore_value is not None:
            out = torch.where(raw == self.ignore_value, torch.full_like(out, self.ignore_value), out)
        return convert_to_dst_type(out, label, dtype=torch.uint8)[0]


class PrepareLabeld(MapTransform):
    """Dictionary version of :class:`PrepareLabel`.

    Args:
        keys: the keys mapped (``label``).
        num_classes: classes including background.
        threshold: foreground above this value (two classes only), or None.
        ignore_value: the label value passed through untouched.
        select: source values per class, or None.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int = 2,
        threshold: float | None = None,
        ignore_value: int | None = None,
        select: list[list[int]] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = PrepareLabel(num_classes, threshold, ignore_value, select)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


def foreground(label: np.ndarray, ignore_value: int | None) -> np.ndarray:
    """Boolean mask of labelled, non-background pixels (the ignore value is not foreground)."""
    fg = np.asarray(label) > 0
    return fg if ignore_value is None else fg & (np.asarray(label) != ignore_value)


def label_selection(labels: dict[str, int | list[int]] | None) -> list[list[int]] | None:
    """``data.labels`` ({name: value or values}) as PrepareLabel's ``select``."""
    if labels is None:
        return None
    return [[v] if isinstance(v, int) else list(v) for v in labels.values()]
