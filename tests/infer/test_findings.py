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


def test_class_statistics_equal_numpy_on_a_hand_made_volume():
    """Intensities inside each class as numpy computes them over ``image[label == value]``; several
    channels give one value per channel; a class not found has no statistics."""
    from medseg.infer.findings import class_statistics, statistics_columns

    rng = np.random.default_rng(1)
    image = rng.normal(40, 200, (2, 30, 20, 10))  # two channels, HU-like
    label = np.zeros((30, 20, 10), np.uint8)
    label[3:12, 4:15, 2:8] = 1
    label[20:25, 2:6, 1:3] = 3
    label[0, 0, 0] = 3  # two pieces: its box spans most of the volume
    names = {1: "liver", 2: "spleen", 3: "kidney"}
    stats = class_statistics(image, label, names, 0.00675)
    for value, name in names.items():
        inside = image[:, label == value]
        entry = stats[name]
        assert entry["value"] == value and entry["voxels"] == inside.shape[1]
        assert entry["volume"] == round(inside.shape[1] * 0.00675, 4)
        if not inside.shape[1]:
            assert entry["mean"] is entry["median"] is None
            continue
        for key, expected in {
            "mean": inside.mean(1),
            "median": np.median(inside, 1),
            "std": inside.std(1),
            "min": inside.min(1),
            "max": inside.max(1),
        }.items():
            np.testing.assert_allclose(entry[key], expected, rtol=1e-12)
    one = class_statistics(image[:1], label, names, 1.0)
    assert one["liver"]["median"] == np.median(image[0][label == 1])
    assert statistics_columns({"classes": one}) == {
        "mean_liver": round(one["liver"]["mean"], 4),
        "median_liver": round(one["liver"]["median"], 4),
        "mean_spleen": "",
        "median_spleen": "",
        "mean_kidney": round(one["kidney"]["mean"], 4),
        "median_kidney": round(one["kidney"]["median"], 4),
    }
    assert set(statistics_columns({"classes": stats})) >= {"mean_liver_0", "mean_liver_1", "median_kidney_1"}


def test_a_volume_as_read_goes_back_to_the_stored_voxel_order():
    """The canonical (RAS) array of an LPS-stored volume, put back on the stored grid, equals the
    stored array: statistics are taken voxel by voxel against the label map as written."""
    from medseg.infer.findings import intensities_on_source
    from medseg.io.geometry import to_canonical
    from medseg.io.source import Properties

    stored = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    lps = np.diag([-1.5, -1.5, 3.0, 1.0])
    canon, canon_affine = to_canonical(stored, lps)
    props = Properties("nifti", (1.5, 1.5, 3.0), canon_affine, stored.shape, source_affine=lps)
    np.testing.assert_array_equal(intensities_on_source(canon[None], canon_affine, props)[0], stored)
