"""``--model``: a run folder, or an MLflow model laid out as one.

MLflow models are ``runs:/<id>`` of a pipeline or fold run, and ``models:/<name>/<version>`` or
``models:/<name>@<alias>`` of a registered model version made from such a run
(``mlflow.register_model("runs:/<id>", name)``); they are downloaded as ``config.yaml`` and fold
checkpoints. Checkpoints are logged when ``tracking.log_checkpoints`` is on, the default.
"""

from __future__ import annotations

from pathlib import Path

from medseg.errors import MedsegError, mask_credentials
from medseg.infer.bundle import ModelBundle, bundle_from_run_dir
from medseg.run_dir import RunDir
from medseg.tracking.store import check_store, sqlite_path
from medseg.tracking.tracker import check_server, route_mlflow_logging

MLFLOW_PREFIXES = ("runs:/", "models:/")


def load_bundle(
    model: str,
    overrides: list[str] | None = None,
    folds: list[int] | None = None,
    tracking_uri: str | None = None,
    download_dir: Path | None = None,
) -> ModelBundle:
    """The bundle ``--model`` names: a run folder, or an MLflow URI downloaded into ``download_dir``.

    Args:
        model: a run folder, ``runs:/<id>``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``.
        overrides: ``key=value`` settings applied to the run's ``config.yaml``, as ``--set``.
        folds: only these folds; default every finished fold.
        tracking_uri: the MLflow store of an MLflow URI.
        download_dir: where an MLflow model is laid out as a run folder.

    Raises:
        MedsegError: an unknown run or model version, or no finished fold.
    """
    if model.startswith(MLFLOW_PREFIXES):
        if download_dir is None:
            raise MedsegError("an MLflow model URI needs a folder to download the checkpoints into")
        run_dir = download_run(model, tracking_uri, download_dir)
    else:
        run_dir = Path(model)
    return bundle_from_run_dir(run_dir, overrides, folds, source=model)


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


def existing_store(tracking_uri: str | None) -> str:
    """The store to read a model from (MLflow's default when None), refused when it is a sqlite
    file that is not there or not an MLflow store: MLflow would create an empty one.

    Raises:
        MedsegError: naming the file and the option to give.
    """
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        given = f"--tracking-uri {uri}" if tracking_uri else f"no --tracking-uri, and MLflow's default {uri}"
        raise MedsegError(
            f"{given}: no MLflow store at {db}; give the store the run logged to, e.g. "
            "--tracking-uri sqlite:///runs/mlflow.db (the project store beside runs/<study>)"
        )
    if db is not None:
        check_store(db)
    return uri


def download_run(uri: str, tracking_uri: str | None, dest: Path) -> Path:
    """Lay out an MLflow pipeline (or fold) run as a run folder: ``config.yaml`` and fold checkpoints.

    Args:
        uri: ``runs:/<id>`` or ``models:/<name>/<version>``.
        tracking_uri: the tracking store (MLflow's default when None).
        dest: the folder that receives ``<run id>/``.

    Returns:
        The run folder.

    Raises:
        MedsegError: the server, run or model is unknown, or its checkpoints were not logged.
    """
    from mlflow.tracking import MlflowClient

    route_mlflow_logging()
    tracking_uri = existing_store(tracking_uri)
    check_server(tracking_uri)
    client = MlflowClient(tracking_uri)
    run_id = registered_run(client, uri) if uri.startswith("models:/") else uri[6:].strip("/").split("/")[0]
    try:
        run = client.get_run(run_id)
    except Exception as err:
        raise MedsegError(
            f"{uri}: no such run in the tracking store {mask_credentials(tracking_uri)} "
            f"({type(err).__name__}); give the store it logged to, e.g. --tracking-uri sqlite:///runs/mlflow.db"
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
        client.download_artifacts(parent_id, RunDir(run_dir).config.name, str(run_dir))
        for fold_run in fold_runs:
            fold = RunDir(run_dir).fold(int(fold_run.data.tags.get("medseg.fold", -1)))
            fold.checkpoints.mkdir(parents=True, exist_ok=True)
            fold_id = fold_run.info.run_id
            # artifacts are logged under the same names as the run folder's files
            client.download_artifacts(fold_id, f"checkpoints/{fold.best.name}", str(fold.checkpoints))
            client.download_artifacts(fold_id, fold.metrics.name, str(fold.path))
    except MedsegError:
        raise
    except Exception as err:
        raise MedsegError(
            f"{uri}: cannot download config.yaml and fold checkpoints ({type(err).__name__}: {err}); "
            "were checkpoints logged (tracking.log_checkpoints)?"
        ) from None
    return run_dir
