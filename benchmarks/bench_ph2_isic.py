"""PH2 dermoscopy (ISIC 2018 layout): 5-fold accuracy and wall time of `pipelines/isic.yaml`.

Runs `medseg run pipelines/isic.yaml --set data.root=../shared/data/ph2-isic-layout` and prints
the 5-fold mean Dice and ISIC thresholded Jaccard, the wall time, and, as the named baseline
measured in the same run, Otsu thresholding (largest dark component, holes filled) scored with the
same metric code on the same 150 images. Targets: mean Dice >= 0.90 within 60 minutes on 2 CPU
cores.

    python benchmarks/bench_ph2_isic.py                 # full run (about 40 minutes on 2 cores)
    python benchmarks/bench_ph2_isic.py --from runs/isic-ph2   # figures of a finished run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ph2-isic-layout"
TARGET_DICE, BUDGET_MIN = 0.90, 60.0


def otsu_baseline(root: Path) -> tuple[float, float]:
    """Mean Dice and thresholded Jaccard of Otsu thresholding over every case."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from medseg.evaluate.metrics import case_metrics
    from medseg.io.raster import read_raster

    dice, jac = [], []
    for img_path in sorted((root / "ISIC2018_Task1-2_Training_Input").glob("*.jpg")):
        image = read_raster(img_path).astype(float)
        ref = (
            read_raster(root / "ISIC2018_Task1_Training_GroundTruth" / f"{img_path.stem}_segmentation.png")
            > 0
        )
        grey = ndimage.gaussian_filter(image.mean(axis=2), 3)
        dark = grey < threshold_otsu(grey)
        labels, n = ndimage.label(dark)
        if n:
            sizes = ndimage.sum(dark, labels, range(1, n + 1))
            dark = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
        m = case_metrics(dark.astype(np.uint8), ref.astype(np.uint8))
        dice.append(m["dice"])
        jac.append(m["jaccard_thresholded"])
    return float(np.mean(dice)), float(np.mean(jac))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="run_dir", type=Path, help="report a finished run instead of running")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-ph2")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: PH2 data not found at {DATA}")
        return 0
    run_dir = args.run_dir
    wall = None
    if run_dir is None:
        run_dir = args.output
        start = time.perf_counter()
        cmd = [str(Path(sys.executable).parent / "medseg"), "run", str(ROOT / "pipelines" / "isic.yaml"),
               "--set", f"data.root={DATA}", "--set", f"output_dir={run_dir}"]  # fmt: skip
        subprocess.run(cmd, check=True)
        wall = (time.perf_counter() - start) / 60
    summary = json.loads((run_dir / "summary.json").read_text())
    if wall is None:
        wall = summary.get("timing", {}).get("total_seconds", float("nan")) / 60
    fold_mean = summary["fold_mean"]["mean"]
    dice, jac = fold_mean["dice"]["mean"], fold_mean["jaccard_thresholded"]["mean"]
    base_dice, base_jac = otsu_baseline(DATA)
    print(f"PH2, {summary['n_cases']} cases, {len(summary['folds'])} folds ({run_dir})")
    std = fold_mean["dice"]["std"]
    print(f"  medseg UNet      mean Dice {dice:.4f} ± {std:.4f}   thresholded Jaccard {jac:.4f}")
    print(f"  baseline Otsu    mean Dice {base_dice:.4f}            thresholded Jaccard {base_jac:.4f}")
    print(f"  ratio to Otsu    Dice x{dice / base_dice:.3f}   thresholded Jaccard x{jac / base_jac:.3f}")
    print(f"  target Dice {TARGET_DICE:.2f}: {'met' if dice >= TARGET_DICE else 'NOT met'}")
    print(f"  wall time {wall:.1f} min; budget {BUDGET_MIN:.0f} min: ratio {wall / BUDGET_MIN:.2f}")
    u = summary.get("uncertainty")
    if u:  # the held-out flip score against chance (AUROC 0.5), the named baseline of a ranking
        auroc = "undefined" if u["auroc"] is None else f"{u['auroc']:.3f} (x{u['auroc'] / 0.5:.2f} chance)"
        rho = "undefined" if u["spearman"] is None else f"{u['spearman']:.3f}"
        print(
            f"  review flag: {u['n_low']} of {u['n']} cases below Dice {u['threshold']}; AUROC {auroc}; "
            f"Spearman(score, Dice) {rho}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
