"""The plan rules: fingerprint numbers in, settings out, each with the reason it is written with.

Target spacing, network topology, patch and batch size follow nnU-Net 2.8.1's
``ExperimentPlanner`` (``determine_fullres_target_spacing``, ``get_pool_and_conv_props``,
``get_plans_for_configuration``), so that without a budget the two agree; the feature-map count
that stands for memory is nnU-Net's ``compute_conv_feature_map_size`` of its plain U-Net, which
MONAI's DynUNet matches stage for stage (two convolutions per stage, transposed convolutions up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ANISOTROPY = 3.0  # an axis this many times coarser than the others is anisotropic
MIN_EDGE = 4  # the bottleneck feature map keeps at least this many voxels per axis
BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
# nnU-Net's reference: this many feature-map voxels fit 8 GB at this batch size
REFERENCE = {2: (85_000_000, 12), 3: (560_000_000, 2)}
REFERENCE_GB = 8.0
MIN_BATCH = 2
MAX_DATASET_COVERED = 0.05  # a batch sees at most 5% of the data set's voxels


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[float]]
) -> tuple[list[float], str]:
    """The median spacing per axis; for anisotropic data the coarse axis takes its 10th percentile.

    nnU-Net's rule: the coarsest median axis is anisotropic when it is more than 3x the next one
    and its median size is under a third of the other axes'; it then takes the 10th percentile of
    its spacings (but no finer than the other axes), so fewer slices are interpolated.

    Example:
        >>> target_spacing([[0.8, 0.8, 5.0], [0.7, 0.7, 5.0], [0.9, 0.9, 1.5]], [[512, 512, 40]] * 3)[0]
        [0.8, 0.8, 2.2]
    """
    sp, sz = np.asarray(spacings, float), np.asarray(shapes, float)
    target = np.percentile(sp, 50, axis=0)
    if sp.shape[1] < 3:
        return [round(float(t), 6) for t in target], "the median spacing per axis"
    size = np.percentile(sz, 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    aniso = target[worst] > ANISOTROPY * max(target[others]) and size[worst] * ANISOTROPY < min(size[others])
    if not aniso:
        return [round(float(t), 6) for t in target], "the median spacing per axis (isotropic enough)"
    coarse = float(np.percentile(sp[:, worst], 10))
    if coarse < max(target[others]):
        coarse = max(max(target[others]), coarse) + 1e-5
    target[worst] = coarse
    reason = (
        f"median spacing, but axis {worst} is over {ANISOTROPY:g}x the others and takes its 10th "
        "percentile (nnU-Net's anisotropy rule)"
    )
    return [round(float(t), 6) for t in target], reason


@dataclass(frozen=True)
class Topology:
    """A U-Net's shape for one patch size: kernel sizes and strides per stage (first stride 1)."""

    kernels: list[list[int]]
    strides: list[list[int]]
    patch: list[int]
    divisible_by: list[int]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def pad_to(shape: Sequence[int], divisible: Sequence[int]) -> list[int]:
    """``shape`` rounded up to multiples of ``divisible``."""
    return [int(math.ceil(s / d) * d) for s, d in zip(shape, divisible, strict=True)]


def topology(spacing: Sequence[float], patch: Sequence[int], min_edge: int = MIN_EDGE) -> Topology:
    """Pool each axis while its spacing is under twice the finest and the bottleneck keeps
    ``min_edge`` voxels; 3-wide kernels on axes within 2x of the finest spacing (else 1).

    Example:
        >>> t = topology([1.0, 1.0], [64, 48])
        >>> t.strides, t.patch
        ([[1, 1], [2, 2], [2, 2], [2, 2]], [64, 48])
        >>> topology([0.8, 0.8, 4.0], [160, 160, 20]).strides[1:3]
        [[2, 2, 1], [2, 2, 1]]
    """
    dim = len(spacing)
    cur_sp, cur_sz = list(map(float, spacing)), list(map(float, patch))
    strides, kernels = [[1] * dim], []
    n_pool, kernel = [0] * dim, [1] * dim
    while True:
        valid = [i for i in range(dim) if cur_sz[i] >= 2 * min_edge]
        if not valid:
            break
        finest = min(cur_sp[i] for i in valid)
        valid = [i for i in valid if cur_sp[i] / finest < 2]
        if len(valid) == 1 and cur_sz[valid[0]] < 3 * min_edge:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and cur_sp[d] / min(cur_sp) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v], n_pool[v] = 2, n_pool[v] + 1
            cur_sp[v] *= 2
            cur_sz[v] = math.ceil(cur_sz[v] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dim)
    divisible = [2**n for n in n_pool]
    return Topology(kernels, strides, pad_to([int(p) for p in patch], divisible), divisible)


def features(n_stages: int, dims: int, base: int = BASE_FEATURES) -> list[int]:
    """``base * 2**i`` per stage, capped (512 in 2D, 320 in 3D, as nnU-Net)."""
    return [min(MAX_FEATURES[dims], base * 2**i) for i in range(n_stages)]


def feature_map_size(patch: Sequence[int], topo: Topology, feats: Sequence[int], n_classes: int) -> int:
    """Voxels of every convolution output of one sample (nnU-Net's memory proxy)."""
    size, sizes, total = list(patch), [], 0
    for stride, f in zip(topo.strides, feats, strict=True):
        size = [a // b for a, b in zip(size, stride, strict=True)]
        sizes.append(size)
        total += 2 * f * int(np.prod(size))
    for s in range(len(feats) - 1):
        skip, f = sizes[-(s + 2)], feats[-(s + 2)]
        total += 2 * f * int(np.prod(skip)) + f * int(np.prod(skip))
    return total + n_classes * int(np.prod(sizes[0]))


def patch_and_batch(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    n_channels: int,
    n_classes: int,
    memory_gb: float,
    dataset_voxels: float,
    base: int = BASE_FEATURES,
) -> dict[str, Any]:
    """Patch size, topology and batch size that fit ``memory_gb``, as nnU-Net plans them.

    The initial patch has the volume of 256^3 (3D) or 2048^2 (2D) voxels in the aspect of the
    spacing, clipped to the median shape; while its feature maps at batch 2 exceed the memory
    reference, the axis largest relative to the median shape shrinks. The batch then fills the
    memory, at most 5% of the data set's voxels and at least 2.
    """
    dims = len(spacing)
    inv = 1 / np.asarray(spacing, float)
    volume = 256**3 if dims == 3 else 2048**2
    initial = [
        min(round(i), int(m))
        for i, m in zip(inv * (volume / np.prod(inv)) ** (1 / dims), median_shape, strict=True)
    ]
    topo = topology(spacing, initial)
    ref, ref_batch = REFERENCE[dims]
    reference = ref * memory_gb / REFERENCE_GB
    estimate = feature_map_size(topo.patch, topo, features(topo.n_stages, dims, base), n_classes)
    while estimate / ref_batch * 2 > reference:
        axis = int(np.argsort([p / m for p, m in zip(topo.patch, median_shape, strict=True)])[-1])
        smaller = list(topo.patch)
        smaller[axis] -= topo.divisible_by[axis]
        step = topology(spacing, smaller).divisible_by[axis]
        patch = list(topo.patch)
        patch[axis] -= step
        topo = topology(spacing, patch)
        estimate = feature_map_size(topo.patch, topo, features(topo.n_stages, dims, base), n_classes)
    batch = round(reference / estimate * ref_batch)
    cap = round(dataset_voxels * MAX_DATASET_COVERED / float(np.prod(topo.patch)))
    return {
        "topology": topo,
        "features": features(topo.n_stages, dims, base),
        "batch_size": max(min(batch, cap), MIN_BATCH),
        "feature_map_voxels": estimate,
        "n_channels": n_channels,
    }


def _clip_zscore(stats: dict[str, float]) -> dict[str, float]:
    step = {
        k: stats[f]
        for k, f in (
            ("lower", "percentile_00_5"),
            ("upper", "percentile_99_5"),
            ("mean", "mean"),
            ("std", "std"),
        )
    }
    return {k: round(float(v), 4) for k, v in step.items()}


CT_REASON = (
    "clip to the foreground 0.5/99.5 percentiles, z-score with the global foreground mean and std "
    "(nnU-Net's CTNormalization)"
)
SCHEME = {"ct": "CT", "nonorm": "none"}


def normalisation(
    modality: str, intensity: Sequence[dict[str, float]], channel_names: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """The ``transforms.preprocess`` of a data set, and why.

    With channel names (nnU-Net's ``channel_names``), each channel by its own: ``CT`` (any letter
    case) is clipped to its foreground 0.5/99.5 percentiles and z-scored with its global foreground
    mean and std (nnU-Net's CTNormalization), ``noNorm`` is left as it is, any other is z-scored per
    image. Without, by the modality: CT as above, everything else z-score per image (per channel
    for RGB).

    Example:
        >>> stats = {"percentile_00_5": -100.0, "percentile_99_5": 300.0, "mean": 80.0, "std": 60.0}
        >>> normalisation("CT", [stats])[0]
        [{'ClipZScored': {'lower': -100.0, 'upper': 300.0, 'mean': 80.0, 'std': 60.0}}]
        >>> steps, why = normalisation("unknown", [stats, stats], ["CT", "T2"])
        >>> [list(s) for s in steps], steps[0]["ClipZScored"]["channels"], steps[1]
        ([['ClipZScored'], ['ZScored']], [0], {'ZScored': {'channels': [1]}})
        >>> why
        "by channel name (nnU-Net's rule): CT: CT, T2: z-score"
    """
    if channel_names:
        return _by_channel(intensity, list(channel_names))
    if modality == "CT":
        return [{"ClipZScored": _clip_zscore(intensity[0])}], f"CT: {CT_REASON}"
    if len(intensity) > 1:
        return [{"NormalizeIntensityd": {"channel_wise": True}}], f"{modality}: z-score per image and channel"
    return [{"NormalizeIntensityd": {}}], f"{modality}: z-score per image (nnU-Net's ZScoreNormalization)"


def _by_channel(intensity: Sequence[dict[str, float]], names: list[str]) -> tuple[list[dict[str, Any]], str]:
    ct = [c for c, n in enumerate(names) if n.casefold() == "ct"]
    plain = [c for c, n in enumerate(names) if n.casefold() not in ("ct", "nonorm")]
    if len(ct) == len(names) == 1:
        return [{"ClipZScored": _clip_zscore(intensity[0])}], f"channel CT: {CT_REASON}"
    if not ct and plain == list(range(len(names))):
        args = {"channel_wise": True} if len(names) > 1 else {}
        return [
            {"NormalizeIntensityd": args}
        ], f"channels {names}: z-score per image and channel (nnU-Net's ZScoreNormalization)"
    steps: list[dict[str, Any]] = [
        {"ClipZScored": {**_clip_zscore(intensity[c]), "channels": [c]}} for c in ct
    ]
    if plain:
        steps.append({"ZScored": {"channels": plain}})
    schemes = ", ".join(f"{n}: {SCHEME.get(n.casefold(), 'z-score')}" for n in names)
    why = f"by channel name (nnU-Net's rule): {schemes}"
    return steps, why


def cases_per_step(batch: int) -> tuple[int, int]:
    """(cases, patches from each) making up a step of ``batch`` patches in 3D: two patches of each
    case when ``batch`` is even, as medseg's loader draws ``transforms.patches_per_image`` patches
    of each of ``train.batch_size`` cases per step; one of each otherwise.

    Example:
        >>> cases_per_step(2), cases_per_step(7)
        ((1, 2), (7, 1))
    """
    return (batch // 2, 2) if batch % 2 == 0 else (batch, 1)


def sliding_window(patch: Sequence[int]) -> dict[str, Any]:
    """Sliding-window inference over the training patch: half-patch overlap, Gaussian weights."""
    return {"roi_size": list(patch), "overlap": 0.5, "mode": "gaussian"}
