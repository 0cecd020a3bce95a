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

    Two classes: any non-zero value is foreground (masks are checked at ingest to be {0,1} or
    {0,255}), or values above ``threshold`` when one is set. More classes: values are kept. The
    ignore value passes through untouched in every case.

    Example:
        >>> PrepareLabel(num_classes=2)(np.array([[0, 255], [255, 0]])).tolist()
        [[0, 1], [1, 0]]
    """

    def __init__(
        self, num_classes: int = 2, threshold: float | None = None, ignore_value: int | None = None
    ) -> None:
        self.num_classes = num_classes
        self.threshold = threshold
        self.ignore_value = ignore_value

    def __call__(self, label: Any) -> Any:
        raw = torch.as_tensor(label) if isinstance(label, torch.Tensor) else torch.from_numpy(np.array(label))
        if self.threshold is not None:
            out = (raw > self.threshold).to(torch.uint8)
        elif self.num_classes == 2:
            out = (raw > 0).to(torch.uint8)
        else:
            out = raw.round().to(torch.uint8)
        if self.ignore_value is not None:
            out = torch.where(raw == self.ignore_value, torch.full_like(out, self.ignore_value), out)
        return convert_to_dst_type(out, label, dtype=torch.uint8)[0]


class PrepareLabeld(MapTransform):
    """Dictionary version of :class:`PrepareLabel`."""

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int = 2,
        threshold: float | None = None,
        ignore_value: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = PrepareLabel(num_classes, threshold, ignore_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


def foreground(label: np.ndarray, ignore_value: int | None) -> np.ndarray:
    """Boolean mask of labelled, non-background pixels (the ignore value is not foreground)."""
    fg = np.asarray(label) > 0
    return fg if ignore_value is None else fg & (np.asarray(label) != ignore_value)
