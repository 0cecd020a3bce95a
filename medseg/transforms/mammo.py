"""Mammography geometry on ``image`` and ``label`` together: one laterality, breast crop, size cap.

``MammoPrepared`` flips images whose laterality (read from the DICOM into the image meta data) is
not ``flip_to``, crops both keys to the bounding box of the breast (Otsu threshold of the image,
opened to cut thin film borders, largest connected component, plus a margin), and downsamples
both so the longer side is at most ``max_size`` (image with area averaging, label nearest-exact),
multiplying the recorded spacing by the factor. When the file states no laterality, the half of
the picture holding more breast tissue decides. The meta data keep ``flipped`` and ``crop_box``,
so a prediction can be put back on the picture as stored
(:func:`medseg.infer.source_grid.probabilities_to_source_2d`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.transforms.keys import IMAGE_KEY, LABEL_KEY


def breast_box(image: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box (rows, columns) of the largest bright connected region of a 2D image."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    step = max(1, max(image.shape) // 512)
    small = image[::step, ::step]
    if float(small.max()) <= float(small.min()):
        return slice(0, image.shape[0]), slice(0, image.shape[1])
    # opening removes thin bright film borders and labels that would join the breast
    mask = ndimage.binary_opening(small > threshold_otsu(small), iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return slice(0, image.shape[0]), slice(0, image.shape[1])
    largest = 1 + int(np.argmax(ndimage.sum_labels(mask, labels, range(1, n + 1))))
    rows, cols = np.nonzero(labels == largest)
    r0, r1 = max(0, rows.min() * step - margin), min(image.shape[0], (rows.max() + 1) * step + margin)
    c0, c1 = max(0, cols.min() * step - margin), min(image.shape[1], (cols.max() + 1) * step + margin)
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def tissue_side(image: np.ndarray) -> str:
    """'L' when more signal lies in the left half of the picture, else 'R'."""
    half = image.shape[1] // 2
    return "L" if float(image[:, :half].sum()) >= float(image[:, half:].sum()) else "R"


class MammoPrepared(MapTransform):
    """Flip, crop and downsample image and label with one geometry taken from the image.

    Args:
        keys: the keys transformed.
        flip_to: the side every breast is flipped to (``L`` or ``R``), or None to keep it.
        crop_breast: crop to the breast's bounding box.
        crop_margin: pixels kept around that box.
        max_size: the longest edge after downsampling, or None to keep the size.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self,
        keys: KeysCollection = (IMAGE_KEY, LABEL_KEY),
        flip_to: str | None = "L",
        crop_breast: bool = True,
        crop_margin: int = 16,
        max_size: int | None = 1024,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.flip_to, self.crop_breast, self.crop_margin, self.max_size = (
            flip_to,
            crop_breast,
            crop_margin,
            max_size,
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[IMAGE_KEY]
        plane = np.asarray(image[0], dtype=np.float32)
        side = str(image.meta.get("laterality") or "") if isinstance(image, MetaTensor) else ""
        flip = False
        if self.flip_to is not None:
            # a side stated in the file decides; otherwise the half of the picture with more tissue
            seen = tissue_side(plane)
            flip = seen != self.flip_to if not side else side != self.flip_to
        if flip:
            plane = plane[:, ::-1]
        box = breast_box(plane, self.crop_margin) if self.crop_breast else (slice(None), slice(None))
        height = (box[0].stop or plane.shape[0]) - (box[0].start or 0)
        width = (box[1].stop or plane.shape[1]) - (box[1].start or 0)
        factor = 1.0
        if self.max_size is not None and max(height, width) > self.max_size:
            factor = self.max_size / max(height, width)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        for key in self.key_iterator(d):
            d[key] = self._apply(d[key], flip, box, size, key == LABEL_KEY)
        return d

    @staticmethod
    def _apply(x: Any, flip: bool, box: tuple[slice, slice], size: tuple[int, int], is_label: bool) -> Any:
        t = torch.as_tensor(x)
        if flip:
            t = t.flip(-1)
        t = t[:, box[0], box[1]]
        old = t.shape[1:]
        if tuple(old) != size:
            if is_label:
                t = F.interpolate(t[None].float(), size=size, mode="nearest-exact")[0].to(
                    torch.as_tensor(x).dtype
                )
            else:
                t = F.interpolate(t[None].float(), size=size, mode="area")[0]
        meta = {k: v for k, v in x.meta.items() if k != "affine"} if isinstance(x, MetaTensor) else {}
        spacing = np.asarray(meta.get("spacing", (1.0, 1.0)), dtype=np.float64)
        meta["spacing"] = spacing * np.array([old[0] / size[0], old[1] / size[1]])
        meta["flipped"] = flip
        # where this grid sits in the picture as stored: rows r0:r1, columns c0:c1 after the flip
        full = torch.as_tensor(x).shape[1:]
        meta["crop_box"] = (
            box[0].start or 0,
            box[0].stop or full[0],
            box[1].start or 0,
            box[1].stop or full[1],
        )
        affine = torch.as_tensor(np.diag([*meta["spacing"], 1.0, 1.0]), dtype=torch.float64)
        return MetaTensor(t.contiguous().as_subclass(torch.Tensor), affine=affine, meta=meta)
