"""The plan rules against hand-computed fingerprints (the arithmetic is in the comments)."""

from __future__ import annotations

import pytest

from medseg.plan import budget as B
from medseg.plan import rules


def test_isotropic_spacing_is_the_median_per_axis():
    spacing, reason = rules.target_spacing(
        [[0.7, 0.7, 1.0], [0.8, 0.8, 1.2], [0.9, 0.9, 1.1]], [[200, 200, 150]] * 3
    )
    assert spacing == [0.8, 0.8, 1.1] and "median" in reason


def test_anisotropic_axis_takes_its_10th_percentile():
    # median z 5.0 > 3 x 0.8 and 40 slices x 3 < 512: anisotropic; 10th percentile of [1.5, 5, 5, 5, 5]
    # is 1.5 + 0.4 x 3.5 = 2.9
    spacings = [[0.8, 0.8, 5.0]] * 4 + [[0.8, 0.8, 1.5]]
    spacing, reason = rules.target_spacing(spacings, [[512, 512, 40]] * 5)
    assert spacing == pytest.approx([0.8, 0.8, 2.9]) and "10th percentile" in reason


def test_coarse_spacing_with_many_slices_keeps_the_median():
    # z is 5x coarser but has 200 slices (200 x 3 > 512): nnU-Net's voxel condition fails
    spacing, _ = rules.target_spacing([[0.8, 0.8, 5.0]] * 3, [[512, 512, 200]] * 3)
    assert spacing == [0.8, 0.8, 5.0]


def test_topology_pools_the_coarse_axis_only_once_it_is_within_twice_the_finest():
    # x, y: 0.8 -> 1.6 -> 3.2 (z 4.0 now within 2x) -> all three pool -> z stops at 5 voxels
    topo = rules.topology([0.8, 0.8, 4.0], [160, 160, 20])
    assert topo.strides == [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 1]]
    assert topo.kernels == [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert topo.divisible_by == [32, 32, 4] and topo.patch == [160, 160, 20]  # z pooled twice


def test_topology_of_tiny_and_elongated_pictures():
    assert rules.topology([1.0, 1.0], [12, 12]).strides == [[1, 1], [2, 2]]
    assert rules.topology([1.0, 1.0], [6, 6]).strides == [[1, 1]]  # too small to pool at all
    # 20 x 200: both pool to 5 x 50, then only the long axis, while it keeps 12 voxels: 25, 13, 7
    long = rules.topology([1.0, 1.0], [20, 200])
    assert long.strides == [[1, 1], [2, 2], [2, 2], [1, 2], [1, 2], [1, 2]]
    assert long.divisible_by == [4, 32] and long.patch == [20, 224]


def test_feature_maps_and_batch_of_a_small_picture():
    # stages 64x48, 32x24, 16x12, 8x6 with 32, 64, 128, 256 features:
    # encoder 2 x (32*3072 + 64*768 + 128*192 + 256*48) = 368640; decoder 3 x (128*192 + 64*768 +
    # 32*3072) = 516096; output 2 x 3072 = 6144; 890880 in all
    plan = rules.patch_and_batch([1.0, 1.0], [64, 48], 3, 2, 8.0, dataset_voxels=64 * 48 * 10)
    assert plan["topology"].patch == [64, 48] and plan["features"] == [32, 64, 128, 256]
    assert plan["feature_map_voxels"] == 890880
    assert plan["batch_size"] == 2  # 5% of 10 pictures is half a picture: the minimum of 2
    many = rules.patch_and_batch([1.0, 1.0], [64, 48], 3, 2, 8.0, dataset_voxels=64 * 48 * 1000)
    assert many["batch_size"] == 50  # 5% of 1000 pictures (memory would allow 1145)


def test_patch_shrinks_until_it_fits_the_memory():
    big = rules.patch_and_batch([1.0, 1.0, 1.0], [256, 256, 256], 1, 2, 8.0, 1e12)
    small = rules.patch_and_batch([1.0, 1.0, 1.0], [256, 256, 256], 1, 2, 2.0, 1e12)
    assert small["feature_map_voxels"] < big["feature_map_voxels"]
    ref, ref_batch = rules.REFERENCE[3]
    assert small["feature_map_voxels"] * 2 / ref_batch <= ref * 2.0 / rules.REFERENCE_GB
    assert all(
        p % d == 0 for p, d in zip(small["topology"].patch, small["topology"].divisible_by, strict=True)
    )


def test_normalisation_by_modality():
    ct, why = rules.normalisation(
        "CT", [{"percentile_00_5": -990.0, "percentile_99_5": 1500.0, "mean": 40.0, "std": 200.0}]
    )
    assert (
        ct == [{"ClipZScored": {"lower": -990.0, "upper": 1500.0, "mean": 40.0, "std": 200.0}}]
        and "CT" in why
    )
    assert rules.normalisation("MR", [{}])[0] == [{"NormalizeIntensityd": {}}]
    assert rules.normalisation("RGB", [{}, {}, {}])[0] == [{"NormalizeIntensityd": {"channel_wise": True}}]


def test_sliding_window_follows_the_patch():
    assert rules.sliding_window([96, 96, 32]) == {
        "roi_size": [96, 96, 32],
        "overlap": 0.5,
        "mode": "gaussian",
    }


def test_epochs_within_a_budget():
    # 10 cases: 2 held out, 8 trained of which 1 watches early stopping, 7 fitted
    shares = B.Shares.of(10)
    assert (shares.fit, shares.val, shares.test) == (7, 1, 2)
    # fixed: 10 x 0.1 + 5 x (10 x 0.1 + 2 x (2 x 0.5 + 0.1)) = 17 s; per epoch 5 x (4 x 1 + 1 x 0.5) = 22.5 s
    work = B.Workload(n_cases=10, folds=5, batch=2, per_image=1, step=1.0, val_case=0.5, load=0.1)
    assert work.epochs_within(1000) == int((1000 * B.MARGIN - 17) / 22.5)
    assert work.study_seconds(10) == pytest.approx(17 + 10 * 22.5)
    assert work.epochs_within(10) == 0
    # the held-out flips of the uncertainty score (2D: two more inferences a case): 2 x 2 x 0.5 more a fold
    flips = B.Workload(n_cases=10, folds=5, batch=2, per_image=1, step=1.0, val_case=0.5, load=0.1, members=3)
    assert flips.study_seconds(10) == pytest.approx(17 + 5 * 2 + 10 * 22.5)


def test_the_smallest_budget_that_fits_trains_the_fewest_epochs_allowed():
    work = B.Workload(n_cases=10, folds=5, batch=2, per_image=1, step=1.0, val_case=0.5, load=0.1)
    # 48 epochs: (17 + 48 x 22.5) / 0.9 = 1218.9 s, so 21 minutes (49 epochs); 20 give 47 epochs
    assert B.MIN_EPOCHS == 48
    assert work.smallest_budget() == 21 * 60
    assert work.epochs_within(21 * 60) == 49 and work.epochs_within(20 * 60) == 47
    fast = B.Workload(n_cases=10, folds=5, batch=2, per_image=1, step=0.001, val_case=0.001, load=0.001)
    assert fast.smallest_budget() == 60  # never less than a minute


def test_fewer_folds_for_fewer_patients():
    # 8 cases of 2 patients: 2 folds of 4 held out, 3 fitted and 1 watching
    work = B.Workload(n_cases=8, folds=2, batch=2, per_image=1, step=1.0, val_case=0.5, load=0.1)
    assert (work.shares.fit, work.shares.val, work.shares.test) == (3, 1, 4)
    # fixed: 8 x 0.1 + 2 x (8 x 0.1 + 4 x (2 x 0.5 + 0.1)) = 11.2 s; per epoch 2 x (2 x 1 + 1 x 0.5) = 5 s
    assert work.study_seconds(3) == pytest.approx(11.2 + 3 * 5)
