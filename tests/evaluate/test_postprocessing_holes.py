"""Hole filling chosen from cross-validated Dice after the largest component (``infer.fill_holes: auto``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from medseg.config.models import InferConfig
from medseg.evaluate.postprocessing import (
    adopted_rows,
    choose,
    dice,
    postprocess_map,
    score_variants,
    variant_maps,
    variant_rows,
    write_variants,
)
from medseg.infer.postprocess import postprocess

from .test_postprocessing_choice import _two_classes


def _holed_lesion() -> tuple[np.ndarray, np.ndarray]:
    """A solid reference lesion; the prediction misses its middle and adds a far island."""
    ref = np.zeros((40, 40), np.uint8)
    ref[5:25, 5:25] = 1
    pred = ref.copy()
    pred[12:16, 12:16] = 0  # a 16-pixel hole
    pred[33:36, 33:36] = 1  # a 9-pixel island
    return pred, ref


def test_holes_filled_after_the_largest_component_when_dice_rises(tmp_path):
    pred, ref = _holed_lesion()
    maps = variant_maps(pred, 2, holes=True)
    assert set(maps) == {"none", "foreground", "each", "none_filled", "foreground_filled", "each_filled"}
    assert maps["foreground_filled"].sum() == 400 and (maps["foreground_filled"] == ref).all()
    assert maps["none_filled"].sum() == 409  # the island stays: it is no hole
    (row,) = variant_rows("a", pred, ref, 2, None, maps)
    assert row["foreground_filled"] == 1.0 and row["foreground"] == 2 * 384 / (384 + 400)
    write_variants(tmp_path / "f.csv", [row], holes=True)
    choice = choose([tmp_path / "f.csv"])
    assert choice["value"] == "foreground" and choice["fill_holes"] is True
    assert "then holes filled" in choice["reason"]
    assert choice["overall_mean_dice"]["foreground_filled"] == 1.0


def test_holes_that_are_true_are_not_filled(tmp_path):
    ref = np.zeros((40, 40), np.uint8)
    ref[5:25, 5:25] = 1
    ref[12:16, 12:16] = 0  # a ring-shaped structure: its hole is real
    write_variants(
        tmp_path / "f.csv", variant_rows("a", ref.copy(), ref, 2, None, variant_maps(ref, 2, True)), True
    )
    choice = choose([tmp_path / "f.csv"])
    assert choice["value"] is False and choice["fill_holes"] is False
    assert "holes not filled" in choice["reason"]
    assert choice["mean_dice"]["none_filled"]["1"] < 1.0


def test_studies_without_hole_filling_choose_as_before(tmp_path):
    pred, ref = _holed_lesion()
    write_variants(tmp_path / "f.csv", variant_rows("a", pred, ref, 2, None))
    choice = choose([tmp_path / "f.csv"])
    assert choice["value"] == "foreground" and choice["fill_holes"] is False
    assert "holes" not in choice["reason"] and "none_filled" not in choice["mean_dice"]


def test_the_adopted_rows_with_holes_are_the_scores_of_what_predict_writes():
    pred, ref = _two_classes()  # an island of each class
    pred[10:13, 10:13] = 0  # a hole in class 1
    pred[29:31, 29:31] = 0  # and one in class 2

    def score(label):
        return [{"case": "a", "label": k, "dice": dice(label, ref, k)} for k in (1, 2)]

    raw = score(pred)
    variants = score_variants(variant_maps(pred, 3, holes=True), raw, score)
    for value in ("foreground", [1, 2], False):
        settings = InferConfig(largest_component=value, fill_holes=True)
        delivered = postprocess(torch.as_tensor(pred.copy()), settings, 3).numpy()
        np.testing.assert_array_equal(postprocess_map(pred, value, 3, holes=True), delivered)
        assert adopted_rows(raw, variants, value, holes=True) == score(delivered), value
    assert [r["dice"] for r in adopted_rows(raw, variants, [1, 2], holes=True)] == [1.0, 1.0]  # each class


def test_a_choice_of_some_classes_leaves_holes_unfilled(tmp_path):
    rows = [
        {"case": "a", "class": 1, "none": 0.8, "foreground": 0.7, "each": 0.9, "none_filled": 0.85,
         "foreground_filled": 0.75, "each_filled": 0.95},
        {"case": "a", "class": 2, "none": 0.8, "foreground": 0.7, "each": 0.8, "none_filled": 0.85,
         "foreground_filled": 0.75, "each_filled": 0.85},
    ]  # fmt: skip
    write_variants(tmp_path / "f.csv", rows, holes=True)
    choice = choose([tmp_path / "f.csv"])
    assert choice["value"] == [1] and choice["fill_holes"] is False
    assert "not scored after a choice of some classes" in choice["reason"]


def test_fill_holes_auto_needs_largest_component_auto():
    assert InferConfig(largest_component="auto", fill_holes="auto").fill_holes == "auto"
    with pytest.raises(ValidationError, match="largest_component: auto"):
        InferConfig(largest_component=True, fill_holes="auto")
    lesion = torch.zeros((9, 9), dtype=torch.uint8)
    lesion[2:7, 2:7] = 1
    lesion[4, 4] = 0
    out = postprocess(lesion, InferConfig(largest_component="auto", fill_holes="auto"), 2)
    assert int(out[4, 4]) == 0  # auto, not chosen yet: the held-out prediction stays as predicted
