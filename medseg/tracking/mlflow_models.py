"""Fold models and the fold ensemble as MLflow PyTorch models, so the MLflow UI can register them
and ``models:/<name>/<version>`` loads them anywhere (``mlflow.pytorch.load_model``) or gives
``medseg predict --model`` the whole study.

Each model holds the network (pickled whole; loading needs ``torch``, ``monai`` and ``medseg``), a
tensor signature over the sliding window (N, channels, *roi) and the resolved ``config.yaml``,
whose ``transforms`` section is the preprocessing its inputs need. A fold model outputs logits, the
ensemble (:class:`medseg.infer.ensemble.FoldEnsemble`) the mean softmax of the folds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from medseg import __version__
from medseg.config.models import PipelineConfig
from medseg.io.checkpoint import load_weights
from medseg.registry import build_network
from medseg.tracking.tracker import Tracker, route_mlflow_logging

log = logging.getLogger(__name__)

MODEL_NAME = "model"  # the fold run's model; the pipeline run's is the ensemble


def signature(cfg: PipelineConfig) -> Any:
    """(N, channels, *roi) float32 in, (N, num_classes, *roi) float32 out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    roi = tuple(int(s) for s in cfg.roi_size)
    spec_in = TensorSpec(np.dtype(np.float32), (-1, cfg.data.in_channels, *roi), "image")
    spec_out = TensorSpec(np.dtype(np.float32), (-1, cfg.data.num_classes, *roi), "output")
    return ModelSignature(inputs=Schema([spec_in]), outputs=Schema([spec_out]))


def requirements() -> list[str]:
    import monai
    import torch

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"monai=={monai.__version__}",
        f"medseg=={__version__}",
    ]


def log_model(
    tracker: Tracker, run_id: str | None, model: nn.Module, cfg: PipelineConfig, config: Path, **meta: Any
) -> str | None:
    """Log ``model`` as the PyTorch model ``model`` of ``run_id``; its model URI, or None when
    tracking is off."""
    if not (tracker.enabled and run_id):
        return None
    import os

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar of MLflow's between the log lines
    import mlflow
    import mlflow.pytorch

    route_mlflow_logging()
    mlflow.set_tracking_uri(tracker.uri)
    with tracker.writing(), mlflow.start_run(run_id=run_id):  # other fold jobs wait for the store
        info = mlflow.pytorch.log_model(
            model.cpu().eval(),
            name=MODEL_NAME,
            signature=signature(cfg),
            serialization_format="pickle",
            pip_requirements=requirements(),
            extra_files=[str(config)],
            metadata={"medseg_version": __version__, "config": config.name, **meta},
        )
    return str(info.model_uri)


def fold_network(cfg: PipelineConfig, checkpoint: Path) -> nn.Module:
    model = build_network(cfg.network)
    load_weights(model, checkpoint)
    return model.eval()


def log_fold_model(
    tracker: Tracker, run_id: str | None, cfg: PipelineConfig, checkpoint: Path, config: Path
) -> str | None:
    """The fold's best checkpoint as an MLflow model of its run (outputs logits)."""
    if not (tracker.enabled and run_id and cfg.tracking.log_models):
        return None
    return log_model(tracker, run_id, fold_network(cfg, checkpoint), cfg, config, output="logits")


def log_ensemble(
    tracker: Tracker, cfg: PipelineConfig, checkpoints: dict[int, Path], config: Path
) -> str | None:
    """The folds' best checkpoints as one MLflow model of the pipeline run (outputs probabilities)."""
    if not (tracker.enabled and tracker.parent_id and cfg.tracking.log_models and checkpoints):
        return None
    from medseg.infer.ensemble import FoldEnsemble

    models = [fold_network(cfg, checkpoints[k]) for k in sorted(checkpoints)]
    folds = ",".join(str(k) for k in sorted(checkpoints))
    return log_model(
        tracker, tracker.parent_id, FoldEnsemble(models), cfg, config, output="probabilities", folds=folds
    )
