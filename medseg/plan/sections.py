"""The sections of a planned pipeline, each built as its config model with the reason of each
value: one ``plan_*`` function per decision, as nnU-Net's planner has one ``determine_*`` each.

The models (:mod:`medseg.config.models`) check every value as it is planned; the plan file is
their dump (only the values set here), with the reasons beside them (:mod:`medseg.plan.write`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.config.models import (
    ComponentConfig,
    DataConfig,
    InferConfig,
    OptimizerConfig,
    PipelineConfig,
    PredictConfig,
    SplitConfig,
    TrainConfig,
    TransformsConfig,
)
from medseg.plan import budget as B
from medseg.plan import rules
from medseg.plan.augment import AUGMENT
from medseg.plan.fingerprint import DATASETS, data_config

Reasons = dict[str, str]
# nnU-Net trains on every training case of a fold and keeps the last epoch: no early-stopping cases
VAL_FRACTION = 0.0
LR_2D, LR_3D = 0.005, 0.002  # AdamW's rate: see plan_train's reason


@dataclass
class Candidate:
    """One way to run the study: a resolution scale and a network width, planned by the rules."""

    scale: float
    network: str
    base: int
    spacing: list[float]
    shape: list[float]
    planned: dict[str, Any]
    epochs: int = 0
    seconds: float = 0.0
    measured: Any = None
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def work(self) -> float:
        """Feature-map voxels per step: what seconds per step are predicted in proportion to."""
        return float(self.planned["feature_map_voxels"] * self.planned["batch_size"])


def folds(fp: dict[str, Any]) -> int:
    """Five folds, or one per patient when there are fewer (a patient never on both sides)."""
    return min(B.FOLDS, fp.get("n_patients", fp["n_cases"]))


def n_classes(fp: dict[str, Any]) -> int:
    """Classes with background: 2 for pictures and masks of one value (1 or 255), else the
    largest label value plus one."""
    values = sorted(int(k) for k in fp["classes"] if int(k) != 0)
    if fp["workflow"] == "isic" or values in ([], [1], [255]):
        return 2
    return values[-1] + 1


def plan_data(fp: dict[str, Any], out: Path) -> tuple[DataConfig, Reasons]:
    """Where the cases are (relative to the plan's folder), their channels and classes."""
    start = data_config(Path(fp["root"]), fp["workflow"])
    root = os.path.relpath(Path(fp["root"]).resolve(), out.parent.resolve())
    fields: dict[str, Any] = (
        {"root": Path(root), "on_bad_case": "skip"} if fp["bad_cases"] else {"root": Path(root)}
    )
    reasons: Reasons = {}
    if fp["workflow"] in DATASETS:
        fields |= {
            k: getattr(start, k) for k in ("layout", "in_channels", "channel_names", "num_classes", "labels")
        }
        if start.ignore_value is not None:
            fields["ignore_value"] = start.ignore_value
        reasons["data.labels"] = "the classes of dataset.json"
        reasons["data.channel_names"] = "the channels of dataset.json, in order"
    elif start.layout == "table":
        fields |= {"layout": "table", "in_channels": fp["channels"], "num_classes": n_classes(fp)}
        values = sorted(int(k) for k in fp["classes"])
        binary = ": a binary mask" if n_classes(fp) == 2 else ", background included"
        reasons["data.num_classes"] = f"label values {values}{binary}"
        if start.mammography is not None:
            fields["mammography"] = start.mammography
    if fp["workflow"] == "isic":
        fields["class_names"] = ["skin_lesion"]
    return DataConfig(**fields), reasons


def plan_transforms(fp: dict[str, Any], cand: Candidate) -> tuple[TransformsConfig, Reasons]:
    """Model grid (2D: size; 3D: spacing and patches), normalisation and augmentation."""
    dims, topo = fp["spatial_dims"], cand.planned["topology"]
    preprocess, norm_reason = rules.normalisation(
        fp["modality"], fp["intensity"], fp.get("channel_names") or None
    )
    kind = "3D" if dims == 3 else "RGB" if fp["channels"] == 3 else "2D"
    fields: dict[str, Any] = {"preprocess": preprocess, "train": AUGMENT[kind]}
    reasons = {"transforms.preprocess": norm_reason}
    patch = [int(p) for p in topo.patch]
    if dims == 2:
        size = rules.pad_to([round(s) for s in cand.shape], topo.divisible_by)
        fields["spatial_size"] = size
        scaled = f" scaled by {cand.scale:g} to fit the budget" if cand.scale < 1 else ""
        reasons["transforms.spatial_size"] = (
            f"the median picture size{scaled}, padded to a multiple of {topo.divisible_by}"
        )
        if patch != size:
            fields["patch_size"] = patch
            reasons["transforms.patch_size"] = (
                "the largest patch whose feature maps fit the memory at batch 2"
            )
        return TransformsConfig(**fields), reasons
    fields |= {
        "spacing": [round(s, 4) for s in cand.spacing],
        "patch_size": patch,
        "patch_pos": 1,
        "patch_neg": 2,
        "patches_per_image": rules.cases_per_step(cand.planned["batch_size"])[1],
    }
    coarse = f", coarsened by 1/{cand.scale:g} to fit the budget" if cand.scale < 1 else ""
    reasons["transforms.spacing"] = cand.reasons.get("spacing", "target spacing") + coarse
    reasons["transforms.patch_size"] = (
        "initial 256^3-voxel patch in the spacing's aspect, clipped to the median shape, shrunk to fit "
        "the memory"
    )
    reasons["transforms.patch_neg"] = "one patch in three centred on foreground, as nnU-Net oversamples"
    reasons["transforms.patches_per_image"] = (
        "patches of each case in a step: train.batch_size cases of this many make the planned batch"
    )
    return TransformsConfig(**fields), reasons


def plan_model(fp: dict[str, Any], cand: Candidate) -> tuple[ComponentConfig, Reasons]:
    """DynUNet (nnU-Net's plain U-Net) of the planned topology, or MONAI's smaller UNet."""
    topo, dims = cand.planned["topology"], fp["spatial_dims"]
    reasons = {
        "model.args.strides": "pool an axis while its spacing is under twice the finest and the bottleneck "
        "keeps 4 voxels"
    }
    if cand.network != "DynUNet":
        channels = [min(cand.base * 2**i, 16 * cand.base) for i in range(topo.n_stages)]
        reasons["model.name"] = (
            "MONAI's UNet (strided convolutions, residual units): a smaller network for the budget"
        )
        return ComponentConfig(
            name="UNet", args={"channels": channels, "strides": topo.strides[1:], "num_res_units": 2}
        ), reasons
    args = {
        "kernel_size": topo.kernels,
        "strides": topo.strides,
        "upsample_kernel_size": topo.strides[1:],
        "filters": cand.planned["features"],
        "deep_supervision": topo.n_stages >= 3,
        "deep_supr_num": max(1, topo.n_stages - 2),
    }
    halved = " (halved to fit the budget)" if cand.base < rules.BASE_FEATURES else ""
    reasons |= {
        "model.args.deep_supervision": "the loss also sees every decoder level above the bottleneck, weights "
        "halving (nnU-Net)",
        "model.args.kernel_size": "3 on axes within twice the finest spacing, else 1",
        "model.args.filters": f"{cand.base} * 2^stage, capped at {rules.MAX_FEATURES[dims]}{halved}",
    }
    return ComponentConfig(name="DynUNet", args=args), reasons


def plan_train(fp: dict[str, Any], cand: Candidate, device: str) -> tuple[TrainConfig, Reasons]:
    """Epochs (from the budget), batch, every training case trained on to the last epoch, nnU-Net's
    loss, the optimiser's rate."""
    batch, flat = cand.planned["batch_size"], fp["spatial_dims"] == 2
    fields: dict[str, Any] = {
        "epochs": max(1, cand.epochs),
        "batch_size": batch if flat else rules.cases_per_step(batch)[0],
        "val_fraction": VAL_FRACTION,
        "patience": None,
        "device": device,
        "loss": ComponentConfig(name="DiceCE", args={"include_background": False, "batch": flat}),
        "optimizer": OptimizerConfig(lr=LR_2D if flat else LR_3D),
    }
    fields |= cand.planned.get("step_options", {})
    reasons = {
        "train.batch_size": f"{batch} {'patches' if fp['spatial_dims'] == 3 else 'pictures'} per step fill "
        "the memory (nnU-Net's reference), at most 5% of the data set's voxels, at least 2"
        + ("" if flat else " (cases x transforms.patches_per_image)"),
        "train.epochs": cand.reasons.get("epochs", ""),
        "train.val_fraction": "every training case of a fold is trained on and the last epoch kept "
        "(nnU-Net's rule)",
        "train.patience": "no early stop: the schedule runs to its end",
        "train.loss": "nnU-Net's loss: Dice of the foreground classes plus cross-entropy; Dice "
        + ("over the batch (nnU-Net's 2D)" if flat else "per case (nnU-Net's 3D full resolution)"),
        "train.optimizer": "AdamW, cosine to 1e-6; "
        + (
            f"{LR_2D} in 2D: on PH2's 30-minute plan (about 800 steps) it gave +0.0018 Dice over 0.002 on "
            "all 150 held-out cases, 0.01 -0.010 on folds 0-1 (benchmarks/RESULTS.md)"
            if flat
            else f"{LR_3D} in 3D, the rate the project's CT studies ran with (0.005 was measured on pictures)"
        ),
    }
    reasons |= cand.reasons.get("step_options_reasons", {})  # type: ignore[arg-type]
    return TrainConfig(**fields), reasons


def plan_infer(fp: dict[str, Any], transforms: TransformsConfig) -> tuple[InferConfig, Reasons]:
    """Sliding window over the training input, Gaussian, half overlap; in 2D the mirrored pictures
    averaged in (nnU-Net's test-time mirroring); post-processing chosen later (in 2D hole filling
    too)."""
    window = rules.sliding_window(transforms.input_size)
    reasons = {
        "infer.overlap": "half a window, Gaussian-weighted, as nnU-Net predicts",
        "infer.largest_component": "chosen from the cross-validated Dice at the end of the run "
        "(nnU-Net's rule)",
    }
    flat = fp["spatial_dims"] == 2
    if flat:
        reasons["infer.tta_flips"] = (
            "the picture and its mirror images averaged, as nnU-Net predicts: 4 passes of a 2D network, "
            "a small share of a study's time; the uncertainty score uses the same flips"
        )
        reasons["infer.fill_holes"] = (
            "chosen from the cross-validated Dice after the largest component: a picture's holes cost "
            "milliseconds to fill (a volume's, per class, far more: not planned in 3D)"
        )
    holes: bool | str = "auto" if flat else False
    return InferConfig(**window, tta_flips=flat, largest_component="auto", fill_holes=holes), reasons


def planned_config(
    fp: dict[str, Any], cand: Candidate, name: str, out: Path, device: str
) -> tuple[PipelineConfig, Reasons]:
    """The whole pipeline of a candidate as a config model, and the reason of each planned value."""
    data, reasons = plan_data(fp, out)
    transforms, more = plan_transforms(fp, cand)
    reasons |= more
    sections: dict[str, Any] = {"data": data, "transforms": transforms}
    for key, (value, why) in {
        "model": plan_model(fp, cand),
        "train": plan_train(fp, cand, device),
        "infer": plan_infer(fp, transforms),
    }.items():
        sections[key] = value
        reasons |= why
    split = SplitConfig(n_folds=folds(fp))
    if folds(fp) < B.FOLDS:
        reasons["split.n_folds"] = f"only {fp['n_patients']} patients: folds never split a patient's images"
    if fp["modality"] not in ("RGB", "grey", "unknown"):
        sections["predict"] = PredictConfig(modalities=[fp["modality"]])
        reasons["predict.modalities"] = "the modality of the planned data; predict skips other series"
    output = os.path.relpath(Path("runs").resolve() / name, out.parent.resolve())
    fingerprint = Path(f"{name}.fingerprint.json")
    cfg = PipelineConfig(name=name, output_dir=Path(output), fingerprint=fingerprint, split=split, **sections)
    return cfg, {k: v for k, v in reasons.items() if v}
