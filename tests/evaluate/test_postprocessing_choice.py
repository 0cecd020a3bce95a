"""Post-processing chosen from cross-validated Dice, as nnU-Net chooses it."""

from __future__ import annotations

import numpy as np

from medseg.evaluate.postprocessing import (
    adopt_predictions,
    adopted_rows,
    choose,
    dice,
    largest_components,
    postprocess_map,
    score_variants,
    variant_maps,
    variant_rows,
    write_variants,
)


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


def _two_classes():
    ref = np.zeros((40, 40), np.uint8)
    ref[5:20, 5:20] = 1
    ref[25:35, 25:35] = 2
    pred = ref.copy()
    pred[2:4, 30:33] = 1  # an island of class 1
    pred[36:38, 2:4] = 2  # an island of class 2
    return pred, ref


def test_the_adopted_rows_are_the_scores_of_what_predict_writes():
    import torch

    from medseg.config.models import InferConfig
    from medseg.infer.postprocess import postprocess

    pred, ref = _two_classes()
    calls = []

    def score(label):
        calls.append(1)
        return [{"case": "a", "label": k, "dice": dice(label, ref, k)} for k in (1, 2)]

    maps = variant_maps(pred, 3)
    raw = score(pred)
    variants = score_variants(maps, raw, score)
    assert len(calls) == 3  # raw, foreground, each: three different maps
    for value in ("foreground", [1], [2], [1, 2], False):
        delivered = postprocess(torch.as_tensor(pred.copy()), InferConfig(largest_component=value), 3).numpy()
        np.testing.assert_array_equal(postprocess_map(pred, value, 3), delivered)
        assert adopted_rows(raw, variants, value) == score(delivered), value
    assert (
        adopted_rows(raw, variants, [1])[0]["dice"] == 1.0 and adopted_rows(raw, variants, [1])[1]["dice"] < 1
    )


def test_variants_equal_to_one_already_scored_are_not_scored_again():
    pred, ref = _blobs()
    calls = []

    def score(label):
        calls.append(1)
        return [{"case": "a", "label": 1, "dice": dice(label, ref, 1)}]

    out = score_variants(variant_maps(pred, 2), score(pred), score)
    assert len(calls) == 2 and out["each"] is out["foreground"]  # one class: the same map
    calls.clear()
    out = score_variants(variant_maps(ref, 2), score(ref), score)
    assert len(calls) == 1 and out["foreground"][0]["dice"] == 1.0  # one component: as predicted


def test_predictions_are_rewritten_post_processed_and_kept_as_predicted(tmp_path):
    from medseg.io.readers import NIFTI, RASTER
    from medseg.run_dir import RunDir

    fold = RunDir(tmp_path).fold(0)
    pred, ref = _blobs()
    RASTER.write(fold.prediction("island", 2), pred * np.uint8(255))
    RASTER.write(fold.prediction("clean", 2), ref * np.uint8(255))
    volume = np.stack([pred, ref, ref], -1)  # 3D, two classes
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    NIFTI.write(fold.prediction("volume", 3), volume, affine)
    for _ in range(2):  # a second study end finds the raw copies and changes nothing more
        assert adopt_predictions(fold, "foreground", 2) == {"island.png", "volume.nii.gz"}
        np.testing.assert_array_equal(RASTER.read_2d(fold.prediction("island", 2))[0], ref * 255)
        np.testing.assert_array_equal(RASTER.read_2d(fold.predictions_raw / "island.png")[0], pred * 255)
        array, got_affine, _ = NIFTI.read_3d(fold.prediction("volume", 3))
        np.testing.assert_array_equal(array, np.stack([ref, ref, ref], -1))
        np.testing.assert_allclose(got_affine, affine)
        np.testing.assert_array_equal(NIFTI.read_3d(fold.predictions_raw / "volume.nii.gz")[0], volume)
    assert adopt_predictions(RunDir(tmp_path).fold(1), "foreground", 2) == set()  # no predictions
    assert adopt_predictions(fold, False, 2) == set()
