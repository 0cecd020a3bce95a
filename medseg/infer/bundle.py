"""The trained model of a study: its resolved configuration and the fold checkpoints.

``--model`` is a run folder written by ``medseg run`` (``config.yaml`` and
``fold_k/checkpoints/best.pt`` of every finished fold), or an MLflow URI read from the tracking
store given by ``--tracking-uri``: ``runs:/<run id>`` of a pipeline run (all its finished fold
runs) or of one fold run, or ``models:/<name>/<version>`` / ``models:/<name>@<alias>`` of a
registered model version made from such a run (``mlflow.register_model("runs:/<id>", name)``).
Checkpoints are logged when ``tracking.log_checkpoints`` is on, the default.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medseg.config import PipelineConfig
from medseg.errors import MedsegError

log = logging.getLogger(__name__)

FOLD_DIR = re.compile(r"fold_(\d+)$")


@dataclass
class ModelBundle:
    cfg: PipelineConfig
    checkpoints: dict[int, Path]  # fold -> best.pt
    source: str

    def load(self, device: torch.device) -> list[nn.Module]:
        """The fold networks, weights loaded, in eval mode on ``device``."""
        from medseg.train.checkpoint import load_weights
        from medseg.train.loop import build_network

        models = []
        for fold in sorted(self.checkpoints):
            model = build_network(self.cfg)
            load_weights(model, self.checkpoints[fold])
            models.append(model.to(device).eval())
        return models


def load_bundle(
    model: str,
    overrides: list[str] | None = None,
    folds: list[int] | None = None,
    tracking_uri: str | None = None,
    download_dir: Path | None = None,
) -> ModelBundle:
    """Resolve ``model`` (a run folder or ``runs:/<id>``) into a bundle; ``overrides`` as ``--set``."""
    if model.startswith(("runs:/", "models:/")):
        if download_dir is None:
            raise MedsegError("an MLflow model URI needs a folder to download the checkpoints into")
        run_dir = download_run(model, tracking_uri, download_dir)
    else:
        run_dir = Path(model)
    bundle = bundle_from_run_dir(run_dir, overrides, folds)
    bundle.source = model
    return bundle


def bundle_from_run_dir(
    run_dir: Path, overrides: list[str] | None = None, folds: list[int] | None = None
) -> ModelBundle:
    from medseg.config import load_pipeline

    config = run_dir / "config.yaml"
    if not config.is_file():
        raise MedsegError(f"{run_dir}: no config.yaml; --model takes a run folder written by `medseg run`")
    cfg = load_pipeline(config, overrides)
    found: dict[int, Path] = {}
    for sub in sorted(run_dir.iterdir()):
        match = FOLD_DIR.match(sub.name)
        best = sub / "checkpoints" / "best.pt"
        # a fold is finished once its held-out cases are scored (metrics.csv)
        if match and best.is_file() and (sub / "metrics.csv").is_file():
            found[int(match.group(1))] = best
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
    return ModelBundle(cfg, found, str(run_dir))


def registered_run(client: object, uri: str) -> str:
    """The run behind ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""
    spec = uri.removeprefix("models:/").strip("/")
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)  # type: ignore[attr-defined]
        else:
            name, number = spec.split("/", 1)
            version = client.get_model_version(name, number)  # type: ignore[attr-defined]
    except Exception as err:
        raise MedsegError(
            f"{uri}: no such registered model version ({type(err).__name__}); "
            "expected models:/<name>/<version> or models:/<name>@<alias> in the --tracking-uri store"
        ) from None
    if not version.run_id:
        raise MedsegError(f"{uri}: the model version was not made from a medseg run (no run id)")
    return str(version.run_id)


def download_run(uri: str, tracking_uri: str | None, dest: Path) -> Path:
    """Lay out an MLflow pipeline (or fold) run as a run folder: config.yaml and fold checkpoints."""
    from mlflow.tracking import MlflowClient

    from medseg.tracking import check_server

    if tracking_uri:
        check_server(tracking_uri)
    client = MlflowClient(tracking_uri)
    run_id = registered_run(client, uri) if uri.startswith("models:/") else uri[6:].strip("/").split("/")[0]
    try:
        run = client.get_run(run_id)
    except Exception as err:
        raise MedsegError(
            f"{uri}: no such run in the tracking store {tracking_uri or '(default)'} ({type(err).__name__}); "
            "give --tracking-uri, e.g. sqlite:///runs/isic/mlflow.db"
        ) from None
    tags = run.data.tags
    if tags.get("medseg.kind") == "fold":
        parent_id, fold_runs = tags.get("mlflow.parentRunId", ""), [run]
    elif tags.get("medseg.kind") == "pipeline":
        parent_id = run_id
        query = f"tags.`mlflow.parentRunId` = '{run_id}' and attributes.status = 'FINISHED'"
        fold_runs = client.search_runs([run.info.experiment_id], query)
    else:
        raise MedsegError(f"{uri}: not a medseg pipeline or fold run (no medseg.kind tag)")
    run_dir = dest / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        client.download_artifacts(parent_id, "config.yaml", str(run_dir))
        for fold_run in fold_runs:
            fold = int(fold_run.data.tags.get("medseg.fold", -1))
            fold_dir = run_dir / f"fold_{fold}"
            fold_dir.mkdir(exist_ok=True)
            (fold_dir / "checkpoints").mkdir(exist_ok=True)
            fold_id = fold_run.info.run_id
            client.download_artifacts(fold_id, "checkpoints/best.pt", str(fold_dir / "checkpoints"))
            client.download_artifacts(fold_id, "metrics.csv", str(fold_dir))
    except MedsegError:
        raise
    except Exception as err:
        raise MedsegError(
            f"{uri}: cannot download config.yaml and fold checkpoints ({type(err).__name__}: {err}); "
            "were checkpoints logged (tracking.log_checkpoints)?"
        ) from None
    return run_dir
