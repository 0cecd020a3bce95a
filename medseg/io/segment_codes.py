"""What each segment of a DICOM SEG is: SNOMED CT category, type and laterality, and its colour.

Viewers group, name and colour segments by these codes (DICOM PS3.3 C.8.20.2, CID 7150/7151), so
a segment coded only as the generic "Anatomical Structure" shows as an anonymous overlay. The
built-in table covers the structures medseg ships pipelines for; ``data.label_codes`` maps a class
to one of its names or to codes of its own. A class with neither falls back to the generic code,
with a warning naming it. Display colours are CIELab, as the standard stores them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

Code = tuple[str, str, str]  # (value, coding scheme, meaning)
ANATOMY: Code = ("91723000", "SCT", "Anatomical Structure")
ABNORMAL: Code = ("49755003", "SCT", "Morphologically Abnormal Structure")
LEFT: Code = ("7771000", "SCT", "Left")
RIGHT: Code = ("24028007", "SCT", "Right")


@dataclass(frozen=True)
class SegmentCode:
    """A segment's category, type, optional laterality and recommended display colour (RGB)."""

    category: Code
    type: Code
    laterality: Code | None = None
    rgb: tuple[int, int, int] = (255, 220, 0)


BUILT_IN: dict[str, SegmentCode] = {
    "liver": SegmentCode(ANATOMY, ("10200004", "SCT", "Liver"), rgb=(221, 130, 101)),
    "spleen": SegmentCode(ANATOMY, ("78961009", "SCT", "Spleen"), rgb=(157, 108, 162)),
    "kidney": SegmentCode(ANATOMY, ("64033007", "SCT", "Kidney"), rgb=(185, 102, 83)),
    "kidney_left": SegmentCode(ANATOMY, ("64033007", "SCT", "Kidney"), LEFT, (185, 102, 83)),
    "kidney_right": SegmentCode(ANATOMY, ("64033007", "SCT", "Kidney"), RIGHT, (212, 126, 151)),
    "lung_nodule": SegmentCode(ABNORMAL, ("27925004", "SCT", "Nodule"), rgb=(255, 128, 0)),
    "lung_tumour": SegmentCode(ABNORMAL, ("108369006", "SCT", "Neoplasm"), rgb=(255, 64, 64)),
    "breast": SegmentCode(ANATOMY, ("76752008", "SCT", "Breast"), rgb=(230, 180, 140)),
    "breast_mass": SegmentCode(ABNORMAL, ("4147007", "SCT", "Mass"), rgb=(255, 0, 128)),
    "skin_lesion": SegmentCode(ABNORMAL, ("52988006", "SCT", "Lesion"), rgb=(255, 160, 0)),
}
ALIASES = {
    "left_kidney": "kidney_left",
    "right_kidney": "kidney_right",
    "kidney_l": "kidney_left",
    "kidney_r": "kidney_right",
    "kidneys": "kidney",
    "lung_tumor": "lung_tumour",
    "tumour": "lung_tumour",
    "tumor": "lung_tumour",
    "nodule": "lung_nodule",
    "lesion": "skin_lesion",
    "mass": "breast_mass",
}
# colours of classes without their own: distinct hues, the first one medseg's overlay yellow
PALETTE = [(255, 220, 0), (0, 200, 255), (255, 0, 200), (120, 255, 0), (255, 120, 0), (140, 80, 255)]


def _key(name: str) -> str:
    key = "_".join(name.strip().lower().replace("-", " ").split())
    return ALIASES.get(key, key)


def segment_code(name: str, index: int, given: SegmentCode | str | None = None) -> SegmentCode:
    """The code of class ``name`` (the ``index``-th foreground class, from 1).

    Args:
        name: the class name (``data.labels`` or ``class_k``).
        index: its class value, for the fallback colour.
        given: its ``data.label_codes`` entry: a built-in name or codes of its own.

    Example:
        >>> segment_code("Left kidney", 2).laterality
        ('7771000', 'SCT', 'Left')
    """
    if isinstance(given, SegmentCode):
        return given
    key = _key(given or name)
    if key in BUILT_IN:
        return BUILT_IN[key]
    if given is not None:
        raise KeyError(f"data.label_codes: '{given}' is not a built-in code; use one of {sorted(BUILT_IN)}")
    log.warning(
        "class '%s' has no SNOMED CT code (data.label_codes); its DICOM SEG segment is coded as the "
        "generic 'Anatomical Structure'",
        name,
    )
    return SegmentCode(ANATOMY, ANATOMY, rgb=PALETTE[(index - 1) % len(PALETTE)])
