"""The augmentation a plan trains with: by kind of data (RGB pictures, grey 2D, volumes)."""

from __future__ import annotations

from typing import Any

AUGMENT: dict[str, list[dict[str, Any]]] = {
    "RGB": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 1}},
        {"RandAffined": {"prob": 0.5, "rotate_range": 0.5, "scale_range": 0.15, "padding_mode": "zeros"}},
        {"RandScaleIntensityd": {"prob": 0.5, "factors": 0.15}},
        {"RandShiftIntensityd": {"prob": 0.5, "offsets": 0.15}},
        {"RandAdjustContrastd": {"prob": 0.3, "gamma": [0.8, 1.25]}},
    ],
    "2D": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandAffined": {"prob": 0.5, "rotate_range": 0.2, "scale_range": 0.15, "padding_mode": "zeros"}},
        {"RandScaleIntensityd": {"prob": 0.3, "factors": 0.1}},
        {"RandShiftIntensityd": {"prob": 0.3, "offsets": 0.1}},
    ],
    "3D": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 1}},
        {
            "RandAffined": {
                "prob": 0.3,
                "rotate_range": [0.0, 0.0, 0.2],
                "scale_range": 0.1,
                "padding_mode": "zeros",
            }
        },
        {"RandScaleIntensityd": {"prob": 0.3, "factors": 0.1}},
        {"RandShiftIntensityd": {"prob": 0.3, "offsets": 0.1}},
    ],
}
