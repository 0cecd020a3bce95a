"""Keys of a case and the role each plays: images interpolate (bi)linearly, labels nearest.

Example:
    >>> role_modes("Resized", [IMAGE_KEY, LABEL_KEY])
    ['bilinear', 'nearest-exact']
    >>> role_modes("RandAffined", [IMAGE_KEY, LABEL_KEY])
    ['bilinear', 'nearest']
"""

from __future__ import annotations

IMAGE_KEY = "image"
LABEL_KEY = "label"
KEYS = [IMAGE_KEY, LABEL_KEY]
ROLE_MODE = {IMAGE_KEY: "bilinear", LABEL_KEY: "nearest"}
# Transforms built on F.interpolate: its legacy "nearest" samples half a pixel away from "bilinear"
# (floor of dst * scale), so labels use "nearest-exact", which samples the same centres.
INTERPOLATE_TRANSFORMS = ("Resized", "Zoomd", "RandZoomd")
INTERPOLATE_ROLE_MODE = {IMAGE_KEY: "bilinear", LABEL_KEY: "nearest-exact"}


def role_modes(name: str, keys: list[str]) -> list[str]:
    """Interpolation mode per key from its role: bilinear for images, nearest for labels."""
    table = INTERPOLATE_ROLE_MODE if name in INTERPOLATE_TRANSFORMS else ROLE_MODE
    return [table[k] for k in keys]
