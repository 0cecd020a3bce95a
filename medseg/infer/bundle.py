"""The trained model of a study: its resolved configuration and the fold checkpoints.

A bundle is read from a run folder written by ``medseg run`` (``config.yaml`` and
``fold_k/checkpoints/best.pt`` of every finished fold). MLflow URIs (``runs:/``, ``models:/``) are
first laid out as such a folder by :func:`medseg.tracking.models.load_bundle`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medseg.config.load import load_pipeline
from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.io.checkpoint import load_weights, trained_channels
from medseg.registry import build_network
from medseg.run_dir import RunDir

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """A study's configuration and the ``best.pt`` of each fold to use.

    Attributes:
        cfg: the configuration the folds were trained with.
        checkpoints: ``best.pt`` by fold number.
        source: the run folder or model URI, for messages.
        channel_names: the input channels the folds were trained on, as their checkpoints record
            them (None: the data named none).
    """

    cfg: PipelineConfig
    checkpoints: dict[int, Path]  # fold -> best.pt
    source: str
    channel_names: list[str] | None = None

    def load(self, device: torch.device) -> list[nn.Module]:
        """The fold networks, weights loaded, in eval mode on ``device``."""
        models = []
        for fold in sorted(self.checkpoints):
            model = build_network(self.cfg.network)
            load_weights(model, self.checkpoints[fold])
            models.append(model.to(device).eval())
        return models


def bundle_from_run_dir(
    run_dir: Path,
    overrides: list[str] | None = None,
    folds: list[int] | None = None,
    source: str | None = None,
) -> ModelBundle:
    """The bundle of a run folder.

    Args:
        run_dir: a folder written by ``medseg run``.
        overrides: ``key=value`` settings applied to its ``config.yaml``, as ``--set``.
        folds: only these folds; default every finished fold.
        source: how the user named the model (a run folder, ``runs:/<id>``), for messages.

    Raises:
        MedsegError: no ``config.yaml``, the folds asked for are not finished, or a fold's
            checkpoint records other input channels than the configuration.
    """
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise MedsegError(f"{run_dir}: no config.yaml; --model takes a run folder written by `medseg run`")
    cfg = load_pipeline(run.config, overrides)
    found = {f.index: f.best for f in run.finished_folds()}
    if folds:
        missing = sorted(set(folds) - set(found))
        if missing:
            raise MedsegError(f"{run_dir}: fold(s) {missing} not finished; finished: {sorted(found)}")
        found = {k: v for k, v in found.items() if k in folds}
    if not found:
        raise MedsegError(
            f"{run_dir}: no finished fold (fold_k/checkpoints/best.pt with fold_k/metrics.csv); "
            "run `medseg run` on the pipeline to the end first"
        )
    log.info("model: %d fold(s) %s from %s", len(found), sorted(found), run_dir)
    names = [trained_channels(path, cfg.data.channel_names) for _, path in sorted(found.items())]
    return ModelBundle(cfg, found, source or str(run_dir), names[0])
