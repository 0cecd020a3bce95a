"""MLflow tracking: one parent run per pipeline run, one nested run per fold.

The default store is the project's sqlite database ``mlflow.db`` beside the run folder, with
artifacts under ``mlartifacts/`` (``tracking.store: run``: inside the run folder; see
:mod:`medseg.tracking.store`); ``tracking.uri`` points at any other store or tracking server. Each
write to a sqlite store holds its lock, as other fold jobs and studies write to it too. With
``tracking.enabled: false`` every call is a no-op, so the pipeline code never branches on it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError, mask_credentials
from medseg.tracking.names import HISTORY_METRIC, epoch_metrics
from medseg.tracking.store import ARTIFACTS, opened, sqlite_path, store_record, study_uri, writing

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
BATCH = 100


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}``; lists stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def route_mlflow_logging() -> None:
    """After MLflow is imported: its loggers write through medseg's log handler (no line of theirs
    cuts into a progress bar), warnings and errors only."""
    for name in ("mlflow", "alembic", "huey"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.WARNING)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle caution: see the README


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with a clear message, when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answered; MLflow reports its own errors from here
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MedsegError(
            f"tracking.uri: no MLflow server answers at {uri} ({reason}); start one, for example "
            "`mlflow server --host 127.0.0.1 --port 5000`, or remove tracking.uri to use the project's "
            "sqlite store beside the run folder"
        ) from None


class Tracker:
    """Thin wrapper over ``MlflowClient``: explicit run ids, no global active-run state.

    Args:
        cfg: the resolved configuration (``tracking`` section, logged as parameters).
        run_dir: the run folder (default sqlite store, ``run_state.json`` run ids).
    """

    def __init__(self, cfg: PipelineConfig, run_dir: Path) -> None:
        self.enabled = cfg.tracking.enabled
        self.run_dir = run_dir
        self.parent_id: str | None = None
        self.experiment_id = ""
        self.uri = ""
        if not self.enabled:
            return
        from mlflow.tracking import MlflowClient

        route_mlflow_logging()
        self.uri = study_uri(cfg.tracking, run_dir)
        check_server(self.uri)
        own = cfg.tracking.uri is None
        try:
            with opened(self.uri, own):  # creating a new store's tables, too, one process at a time
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = self._experiment(cfg.tracking.experiment or cfg.name, own)
        except MedsegError:
            raise
        except Exception as err:  # any store failure becomes one clear message
            raise MedsegError(
                f"tracking.uri: cannot use the MLflow store at {mask_credentials(self.uri)}: {err}"
            ) from None

    def _experiment(self, name: str, own: bool) -> str:
        """The experiment's id, created when new (medseg's own store: artifacts in ``mlartifacts/``
        beside ``mlflow.db``), and tagged for the UI's model-training views."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            db = sqlite_path(self.uri)
            location = (db.parent / ARTIFACTS).resolve().as_uri() if own and db else None
            experiment_id = str(self.client.create_experiment(name, artifact_location=location))
        else:
            experiment_id = str(exp.experiment_id)
        self.client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
        return experiment_id

    def writing(self) -> Any:
        """Hold the store's lock while a write runs (sqlite stores; nothing for servers)."""
        return writing(self.uri)

    def store_record(self) -> str | None:
        """The store as ``run_state.json`` records it (None with tracking off)."""
        return store_record(self.uri, self.run_dir) if self.enabled else None

    # ------------------------------------------------------------------ runs
    def start_parent(self, run_name: str, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with self.writing():
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={"medseg.kind": "pipeline"}
            )
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)

    def start_fold(self, fold: int) -> str | None:
        if not self.enabled:
            return None
        tags = {"mlflow.parentRunId": self.parent_id, "medseg.kind": "fold", "medseg.fold": str(fold)}
        with self.writing():
            run = self.client.create_run(self.experiment_id, run_name=f"fold_{fold}", tags=tags)
            self.client.log_param(run.info.run_id, "fold", fold)
        return str(run.info.run_id)

    def resume(self, run_id: str | None) -> bool:
        """Mark an existing run as running again (a resumed pipeline or fold); False if it is gone."""
        if not (self.enabled and run_id):
            return False
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        if run.info.experiment_id != self.experiment_id or run.info.lifecycle_stage != "active":
            return False
        with self.writing():
            self.client.update_run(run_id, status="RUNNING")
        return True

    def resume_parent(self, run_id: str | None) -> bool:
        if self.resume(run_id):
            self.parent_id = run_id
            return True
        return False

    @contextmanager
    def fold_run(self, fold: int, run_id: str | None) -> Iterator[str | None]:
        """The MLflow run of a fold, resumed when ``run_id`` is still there, else started; ended
        FINISHED when the block completes, KILLED on Ctrl-C, FAILED on any other error."""
        if not self.resume(run_id):
            run_id = self.start_fold(fold)
        with self.ending(run_id):
            yield run_id

    @contextmanager
    def ending(self, run_id: str | None) -> Iterator[None]:
        """End ``run_id`` as the block ends: FINISHED, KILLED (Ctrl-C) or FAILED (an error)."""
        try:
            yield
        except BaseException as err:
            self.end(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        self.end(run_id)

    def log_missing_history(self, run_id: str | None, history: list[dict[str, float]]) -> None:
        """Log the epochs of ``history`` that the run does not hold yet (lost when a run was killed)."""
        if not (self.enabled and run_id):
            return
        logged = {m.step for m in self.client.get_metric_history(run_id, HISTORY_METRIC)}
        for row in history:
            if int(row["epoch"]) not in logged:
                self.log_metrics(run_id, epoch_metrics(row), step=int(row["epoch"]))

    def end(self, run_id: str | None, status: str = "FINISHED") -> None:
        if self.enabled and run_id:
            with self.writing():
                self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ logging
    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if not (self.enabled and run_id):
            return
        from mlflow.entities import Param

        items = [Param(k, mask_credentials(str(v))[:MAX_PARAM_LENGTH]) for k, v in flatten(params).items()]
        with self.writing():
            for i in range(0, len(items), BATCH):
                self.client.log_batch(run_id, params=items[i : i + BATCH])

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not (self.enabled and run_id):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        ]
        with self.writing():
            for i in range(0, len(items), BATCH):
                self.client.log_batch(run_id, metrics=items[i : i + BATCH])

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        if not (self.enabled and run_id):
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, mask_credentials(str(v))) for k, v in tags.items() if v is not None]
        with self.writing():
            self.client.log_batch(run_id, tags=items)

    def has_dataset(self, run_id: str | None) -> bool:
        """Whether ``run_id`` has a dataset input already (a resumed run, another fold job)."""
        if not (self.enabled and run_id):
            return False
        inputs = self.client.get_run(run_id).inputs
        return bool(inputs and inputs.dataset_inputs)

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str, profile: str) -> None:
        """The study's cases as an MLflow dataset input of ``run_id`` (shown in the UI's Datasets)."""
        if not (self.enabled and run_id):
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest, source_type="local", source=source, profile=profile)
        with self.writing():
            self.client.log_inputs(
                run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
            )

    def log_artifact(self, run_id: str | None, path: Path, artifact_path: str | None = None) -> None:
        if not (self.enabled and run_id) or not Path(path).exists():
            return
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)
