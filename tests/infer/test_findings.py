"""Per-class volumes and connected components of a label map, in one pass for the boxes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.infer.findings import findings


def test_findings_equal_a_count_class_by_class():
    rng = np.random.default_rng(0)
    label = np.zeros((40, 50, 12), np.uint8)
    for value, count in ((1, 3), (3, 1)):  # class 2 absent, class 4 beyond the largest value
        for _ in range(count):
            x, y, z = rng.integers(0, 30), rng.integers(0, 40), rng.integers(0, 8)
            label[x : x + 6, y : y + 5, z : z + 3] = value
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    names = {1: "a", 2: "b", 3: "c", 4: "d"}
    found = findings(label, affine, names, ("mL", 1e-3))
    assert found["volume_unit"] == "mL"
    for value, name in names.items():
        mask = label == value
        assert found[f"volume_{name}"] == round(mask.sum() * 0.8 * 0.8 * 3.0 * 1e-3, 4)
        assert found[f"components_{name}"] == ndimage.label(mask)[1]
    assert found["components_a"] >= 2 and found["components_b"] == found["volume_b"] == 0
    assert found["components_d"] == 0
