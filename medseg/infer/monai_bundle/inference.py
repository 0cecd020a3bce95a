"""``configs/inference.json`` of a study's MONAI bundle: what ``python -m monai.bundle run`` does.

The layout is the model zoo's (``spleen_ct_segmentation``): a ``SupervisedEvaluator`` over a
``DataLoader`` of the files matching ``file_pattern`` under ``dataset_dir``, the study's
preprocessing, ``SlidingWindowInferer`` with its window, overlap and weighting, and the network
weights loaded by a ``CheckpointLoader`` handler. ``$`` expressions are only those of the model
zoo's own configs (imports, the device, the file list, ``@network_def.to(@device)``, paths under
``@bundle_root`` and ``@evaluator.run()``).

The network (:mod:`~medseg.infer.monai_bundle.fold_stack`) returns every fold's logits. The
post-processing then does what ``medseg predict`` does after sliding-window inference: the
softmax of each fold's block of channels (``Lambdad`` with ``torch.unflatten``, then
``Activationsd``), their mean (``MeanEnsembled``), back onto the input's grid (``Invertd``),
argmax, the study's adopted post-processing (``KeepLargestConnectedComponentd``,
``FillHolesd``) and the writer (NIfTI, or PNG with 0/255 for one class, class values otherwise).
"""

from __future__ import annotations

from typing import Any

from medseg.config.models import PipelineConfig
from medseg.registry import network_args, yaml_safe

Step = dict[str, Any]
PRED = "pred"


def network_def(cfg: PipelineConfig, n_folds: int) -> Step:
    """The fold networks side by side, each built as the study built it."""
    fold = {"_target_": cfg.model.name, **yaml_safe(network_args(cfg.network))}
    return {"_target_": "scripts.fold_stack.FoldStack", "folds": [dict(fold) for _ in range(n_folds)]}


def largest_component(cfg: PipelineConfig, chosen: Any) -> Step | None:
    """``KeepLargestConnectedComponentd`` as ``infer.largest_component`` (``chosen``: the value
    ``auto`` settled on), or None."""
    keep = chosen if cfg.infer.largest_component == "auto" else cfg.infer.largest_component
    if keep in (None, False, "auto"):
        return None
    classes = keep if isinstance(keep, list) else list(range(1, cfg.data.num_classes))
    return {
        "_target_": "KeepLargestConnectedComponentd",
        "keys": PRED,
        "applied_labels": classes,
        "is_onehot": False,
        "independent": keep != "foreground",
    }


def writer(cfg: PipelineConfig, kind: str) -> Step:
    """``SaveImaged``: a NIfTI on the input's grid, or a PNG as ``medseg predict`` writes one."""
    step: Step = {
        "_target_": "SaveImaged",
        "keys": PRED,
        "output_dir": "@output_dir",
        "output_postfix": "@output_postfix",
        "output_dtype": "uint8",
        "resample": False,
        "separate_folder": False,
    }
    if kind == "nifti":
        return step | {"output_ext": ".nii.gz"}
    scale = 255 if cfg.data.num_classes == 2 else None
    return step | {"output_ext": ".png", "writer": "PILWriter", "scale": scale}


def postprocessing(cfg: PipelineConfig, n_folds: int, kind: str, chosen: Any) -> list[Step]:
    """From the blended logits of every fold to the written label map."""
    classes = cfg.data.num_classes
    unflatten = {"_target_": "torch.unflatten", "_mode_": "callable", "dim": 0, "sizes": [n_folds, classes]}
    steps: list[Step] = [
        {"_target_": "Lambdad", "keys": PRED, "func": unflatten, "_desc_": "(folds, classes, *spatial)"},
        {"_target_": "Activationsd", "keys": PRED, "softmax": True, "dim": 1, "_desc_": "softmax per fold"},
        {"_target_": "MeanEnsembled", "keys": PRED, "output_key": PRED, "_desc_": "mean over the folds"},
        {"_target_": "Invertd", "keys": PRED, "transform": "@preprocessing", "orig_keys": "@image_key",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": PRED, "argmax": True},
    ]  # fmt: skip
    keep = largest_component(cfg, chosen)
    if keep is not None:
        steps.append(keep)
    if cfg.infer.fill_holes is True:  # auto: chosen into the finished run's config.yaml
        steps.append({"_target_": "FillHolesd", "keys": PRED, "applied_labels": list(range(1, classes))})
    return [*steps, writer(cfg, kind)]


def inference_config(
    cfg: PipelineConfig, preprocessing: list[Step], kind: str, n_folds: int, chosen: Any, pattern: str
) -> dict[str, Any]:
    """The whole ``inference.json``.

    Args:
        cfg: the study's configuration (network, window, classes, post-processing).
        preprocessing: the steps of :func:`~medseg.infer.monai_bundle.preprocess.preprocessing`.
        kind: ``nifti`` or ``picture``: what is read and written.
        n_folds: how many fold networks the model holds.
        chosen: the value ``infer.largest_component: auto`` settled on (``postprocessing.json``).
        pattern: the default ``file_pattern`` of the inputs under ``dataset_dir``.
    """
    i = cfg.infer
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "dataset_dir": "/workspace/data",
        "file_pattern": pattern,
        "output_dir": "$@bundle_root + '/eval'",
        "output_postfix": "seg",
        "datalist": "$list(sorted(glob.glob(os.path.join(@dataset_dir, @file_pattern))))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def(cfg, n_folds),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(cfg.roi_size),
                    "sw_batch_size": i.sw_batch_size, "overlap": i.overlap, "mode": i.mode},
        "postprocessing": {"_target_": "Compose", "transforms": postprocessing(cfg, n_folds, kind, chosen)},
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
             "load_dict": {"model": "@network"}, "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                      "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": cfg.train.amp},
        "run": ["$@evaluator.run()"],
    }  # fmt: skip
