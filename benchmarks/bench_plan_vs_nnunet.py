"""medseg's plan rules against nnU-Net 2.8.1's own planner, on the same data.

For PH2 (150 dermoscopy pictures, nnU-Net's 2d configuration) and the shared CT volumes
(nnU-Net's 3d_fullres; labels taken as one foreground class), both planners see the same cases:
nnU-Net through its raw-data layout (written to a temporary folder), medseg through `medseg plan`'s
fingerprint and rules without a budget (nnU-Net's 8 GB memory target). Printed side by side:
target spacing, median shape, patch size, batch size, pooling strides per axis and normalisation.
The named baseline is nnU-Net's plan; the ratio column is medseg's patch voxels over nnU-Net's.

Needs the `plan-compare` extra (`pip install -e '.[plan-compare]'`, nnunetv2==2.8.1); skips otherwise.

    python benchmarks/bench_plan_vs_nnunet.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def nnunet_layout(kind: str, raw: Path) -> tuple[int, Path]:
    """Write the data set in nnU-Net's raw layout; (dataset id, medseg data root)."""
    from PIL import Image

    from medseg.io.nifti import write_nifti
    from medseg.io.readers import read_volume

    if kind == "ph2":
        ident, src = 501, DATA / "ph2-isic-layout"
        folder = raw / "Dataset501_PH2"
        (folder / "imagesTr").mkdir(parents=True)
        (folder / "labelsTr").mkdir()
        for img in sorted((src / "ISIC2018_Task1-2_Training_Input").glob("*.jpg")):
            Image.open(img).convert("RGB").save(folder / "imagesTr" / f"{img.stem}_0000.png")
            mask = np.asarray(
                Image.open(src / "ISIC2018_Task1_Training_GroundTruth" / f"{img.stem}_segmentation.png")
            )
            Image.fromarray((mask > 0).astype(np.uint8)).save(folder / "labelsTr" / f"{img.stem}.png")
        channels, ending, n = {"0": "R", "1": "G", "2": "B"}, ".png", 150
        return _dataset_json(folder, channels, ending, n, ident), src
    ident, folder = 502, raw / "Dataset502_CT"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    table = raw / "medseg-ct"
    table.mkdir()
    ct = DATA / "ct"
    cases = {
        "ts_dicom": (
            ct / "totalsegmentator-example" / "dicom",
            ct / "totalsegmentator-example" / "seg_for_dicom.nii.gz",
        ),
        "ts_3mm": (
            ct / "totalsegmentator-example" / "ct_3mm.nii.gz",
            ct / "totalsegmentator-example" / "seg_3mm.nii.gz",
        ),
        "lung1": (ct / "pyradiomics-lung1" / "image.nii.gz", ct / "pyradiomics-lung1" / "label.nii.gz"),
    }
    rows = ["id,image,label"]
    for name, (image, label) in cases.items():
        array, affine, _ = read_volume(image)
        lab, lab_affine, _ = read_volume(label)
        write_nifti(folder / "imagesTr" / f"{name}_0000.nii.gz", array.astype(np.int16), affine)
        write_nifti(folder / "labelsTr" / f"{name}.nii.gz", (lab > 0).astype(np.uint8), lab_affine)
        write_nifti(table / f"{name}_img.nii.gz", array.astype(np.int16), affine)
        write_nifti(table / f"{name}_seg.nii.gz", (lab > 0).astype(np.uint8), lab_affine)
        rows.append(f"{name},{name}_img.nii.gz,{name}_seg.nii.gz")
    (table / "cases.csv").write_text("\n".join(rows) + "\n")
    return _dataset_json(folder, {"0": "CT"}, ".nii.gz", len(cases), ident), table


def _dataset_json(folder: Path, channels: dict, ending: str, n: int, ident: int) -> int:
    spec = {
        "channel_names": channels,
        "labels": {"background": 0, "foreground": 1},
        "numTraining": n,
        "file_ending": ending,
    }
    (folder / "dataset.json").write_text(json.dumps(spec))
    return ident


def nnunet_plan(ident: int, config: str) -> dict[str, Any]:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    extract_fingerprints([ident], check_dataset_integrity=True, clean=True, verbose=False)
    plans_name = plan_experiments([ident])
    pre = Path(os.environ["nnUNet_preprocessed"])  # noqa: SIM112 (nnU-Net's own name)
    folder = next(pre.glob(f"Dataset{ident}_*"))
    plans = json.loads((folder / f"{plans_name}.json").read_text())
    c = plans["configurations"][config]
    arch = c["architecture"]["arch_kwargs"]
    return {
        "spacing": [round(float(s), 4) for s in c["spacing"]],
        "median_shape": [round(float(s)) for s in c["median_image_size_in_voxels"]],
        "patch": list(c["patch_size"]),
        "batch": c["batch_size"],
        "strides": [list(s) for s in arch["strides"]],
        "features": list(arch["features_per_stage"]),
        "normalisation": c["normalization_schemes"],
    }


def medseg_plan(root: Path, workflow: str) -> dict[str, Any]:
    from medseg.plan import rules
    from medseg.plan.fingerprint import fingerprint
    from medseg.plan.study import _candidate, _geometry

    fp = fingerprint(root, workflow)
    spacing, shape, _ = _geometry(fp)
    cand = _candidate(fp, 1.0, "DynUNet", rules.BASE_FEATURES, rules.REFERENCE_GB)
    topo = cand.planned["topology"]
    preprocess, _ = rules.normalisation(fp["modality"], fp["intensity"])
    return {
        "spacing": [round(float(s), 4) for s in spacing],
        "median_shape": [round(float(s)) for s in shape],
        "patch": topo.patch,
        "batch": cand.planned["batch_size"],
        "strides": topo.strides,
        "features": cand.planned["features"],
        "normalisation": [next(iter(p)) for p in preprocess],
    }


def main() -> int:
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        print("skipped: nnunetv2 is not installed (pip install -e '.[plan-compare]')")
        return 0
    if not DATA.is_dir():
        print(f"skipped: shared data not found at {DATA}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[name] = str(Path(tmp) / name)
            Path(os.environ[name]).mkdir()
        for kind, config, workflow in (("ph2", "2d", "isic"), ("ct", "3d_fullres", "ct")):
            ident, root = nnunet_layout(kind, Path(os.environ["nnUNet_raw"]))  # noqa: SIM112
            theirs, ours = nnunet_plan(ident, config), medseg_plan(root, workflow)
            print(f"\n### {kind} (nnU-Net {config} vs medseg plan, no budget, 8 GB)\n")
            print("| | nnU-Net 2.8.1 (baseline) | medseg |\n|---|---|---|")
            for key in ("spacing", "median_shape", "patch", "batch", "strides", "features", "normalisation"):
                print(f"| {key} | {theirs[key]} | {ours[key]} |")
            ratio = float(np.prod(ours["patch"])) / float(np.prod(theirs["patch"]))
            print(f"| patch voxels, medseg / nnU-Net | 1 | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
