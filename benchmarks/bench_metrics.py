"""HD95 + Surface Dice on a 512x512x128 pair at spacing (0.8, 0.8, 2.0) mm: medseg against MONAI.

Baseline, measured in the same run: MONAI's `compute_hausdorff_distance(percentile=95)` and
`compute_surface_dice(use_subvoxels=True)` on the uncropped volumes. medseg crops both masks to
the union's bounding box plus one voxel and measures distances with a distance transform
(`medseg.evaluate.surface`). The pair: an organ-sized ellipsoid, a prediction shifted and grown
from it, plus a false-positive blob far away. Target: at least 3x faster with identical values.

    python benchmarks/bench_metrics.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np

SHAPE = (512, 512, 128)
SPACING = [0.8, 0.8, 2.0]
TOLERANCE = 2.0
TARGET = 3.0


def make_pair() -> tuple[np.ndarray, np.ndarray]:
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ref = ((x - 250) / 90.0) ** 2 + ((y - 230) / 70.0) ** 2 + ((z - 64) / 30.0) ** 2 <= 1
    pred = ((x - 256) / 94.0) ** 2 + ((y - 226) / 66.0) ** 2 + ((z - 66) / 31.0) ** 2 <= 1
    pred = pred.copy()
    pred[400:412, 60:72, 20:26] = True  # false-positive blob
    return pred, ref


def monai_metrics(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    def onehot(m: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(m)
        return torch.stack([~t, t])[None].float()

    p, r = onehot(pred), onehot(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(p, r, percentile=95, spacing=SPACING)
        nsd = compute_surface_dice(p, r, [TOLERANCE], spacing=SPACING, use_subvoxels=True)
    return float(hd.item()), float(nsd.item())


def medseg_metrics(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from medseg.evaluate.surface import hausdorff, surface_dice

    return hausdorff(pred, ref, SPACING, 95), surface_dice(pred, ref, SPACING, TOLERANCE)


def best_time(
    fn: Callable[..., tuple[float, float]], *args: np.ndarray, repeats: int
) -> tuple[float, tuple[float, float]]:
    times: list[float] = []
    out = (0.0, 0.0)
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pred, ref = make_pair()
    medseg_metrics(pred[200:300, 200:300, 50:80], ref[200:300, 200:300, 50:80])  # imports, warm-up
    monai_metrics(pred[200:300, 200:300, 50:80], ref[200:300, 200:300, 50:80])
    print(
        f"pair {SHAPE} at spacing {SPACING} mm: "
        f"reference {int(ref.sum())} voxels, prediction {int(pred.sum())}"
    )
    t_monai, (hd_m, nsd_m) = best_time(monai_metrics, pred, ref, repeats=args.repeats)
    t_ours, (hd_o, nsd_o) = best_time(medseg_metrics, pred, ref, repeats=args.repeats)
    print(f"baseline MONAI (uncropped): {t_monai:7.2f} s  HD95 {hd_m:.6f} mm  NSD@{TOLERANCE} mm {nsd_m:.6f}")
    print(f"medseg (cropped, EDT):      {t_ours:7.2f} s  HD95 {hd_o:.6f} mm  NSD@{TOLERANCE} mm {nsd_o:.6f}")
    same = abs(hd_m - hd_o) <= 1e-6 * max(1.0, hd_m) and abs(nsd_m - nsd_o) <= 1e-6
    ratio = t_monai / t_ours
    verdict = "met" if ratio >= TARGET and same else "NOT met"
    print(f"speed-up x{ratio:.1f} (target x{TARGET:.0f}); values identical: {same}; target {verdict}")


if __name__ == "__main__":
    main()
