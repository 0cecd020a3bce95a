"""Post-processing chosen from cross-validated Dice, as nnU-Net chooses it."""

from __future__ import annotations

import numpy as np

from medseg.evaluate.postprocessing import choose, dice, largest_components, variant_rows, write_variants


def _blobs():
    ref = np.zeros((40, 40), np.uint8)
    ref[5:20, 5:20] = 1
    pred = ref.copy()
    pred[30:33, 30:33] = 1  # a false positive island
    return pred, ref


def test_variants_score_the_island_removed():
    pred, ref = _blobs()
    (row,) = variant_rows("a", pred, ref, 2, None)
    assert row["none"] == 2 * 225 / (234 + 225)
    assert row["foreground"] == row["each"] == 1.0
    assert np.isnan(dice(np.zeros((2, 2)), np.zeros((2, 2)), 1))


def test_foreground_adopted_only_if_no_class_gets_worse(tmp_path):
    pred, ref = _blobs()
    rows = variant_rows("a", pred, ref, 2, None)
    write_variants(tmp_path / "f0.csv", rows)
    choice = choose([tmp_path / "f0.csv"])
    assert choice["value"] == "foreground" and "no class gets worse" in choice["reason"]
    # two classes: class 2 is a separate true blob, which keeping one foreground component drops
    ref2 = ref.copy()
    ref2[30:36, 2:8] = 2
    pred2 = pred.copy()
    pred2[30:36, 2:8] = 2
    assert (largest_components(pred2, [1, 2], joint=True) == 2).sum() == 0
    write_variants(tmp_path / "f1.csv", variant_rows("b", pred2, ref2, 3, None))
    choice = choose([tmp_path / "f1.csv"])
    assert choice["value"] == [1]  # class 1 gains from its own largest component; class 2 unchanged
    assert choice["mean_dice"]["foreground"]["2"] == 0.0


def test_no_variant_that_lowers_dice_is_adopted(tmp_path):
    ref = np.zeros((40, 40), np.uint8)
    ref[5:10, 5:10] = 1
    ref[25:35, 25:35] = 1  # two true lesions
    write_variants(tmp_path / "f.csv", variant_rows("a", ref.copy(), ref, 2, None))
    assert choose([tmp_path / "f.csv"])["value"] is False
