"""What jobs on several machines need before they are submitted: one tracking store all of them
reach, and a folder no other run holds."""

from __future__ import annotations

from pathlib import Path

from medseg.config.models import TrackingConfig
from medseg.errors import ConfigError, mask_credentials
from medseg.io.lock import hold
from medseg.run_dir import RunDir
from medseg.tracking.store import project_db

SERVERS = ("http://", "https://", "postgresql", "mysql", "mssql", "databricks")


def check_tracking(tracking: TrackingConfig, run_dir: RunDir) -> None:
    """Refuse a tracking store that jobs on other machines would not share.

    Fine: tracking off, no ``tracking.uri`` (the sqlite store ``tracking.store`` names: the project's
    ``mlflow.db`` beside the run folder, or the run folder's own, on the shared file system, each
    write under the store's lock), an MLflow server, a database server, or a sqlite URI naming either
    of those ``mlflow.db`` files. A file store or a sqlite file elsewhere would leave each machine's
    metrics in its own copy.

    Raises:
        ConfigError: naming the URI (credentials masked) and what to set.

    Example:
        >>> check_tracking(TrackingConfig(uri="http://mlflow:5000"), RunDir("runs/x"))
        >>> check_tracking(TrackingConfig(uri="./mlruns"), RunDir("runs/x"))
        Traceback (most recent call last):
        ...
        medseg.errors.ConfigError: tracking.uri './mlruns': ...
    """
    uri = tracking.uri
    if not tracking.enabled or uri is None or uri.lower().startswith(SERVERS):
        return
    own = (run_dir.mlflow_db, project_db(run_dir.root))
    if uri.startswith("sqlite:///") and any(_same_file(uri.removeprefix("sqlite:///"), db) for db in own):
        return
    raise ConfigError(
        f"tracking.uri '{mask_credentials(uri)}': jobs on other machines of the cluster would each "
        "write to a copy of their own and the study's metrics would be split between them; set "
        "tracking.uri to an MLflow server (http://host:5000, see configs/tracking/server.yaml) or a "
        "database server (postgresql://...), or leave it unset to use the sqlite store beside the run "
        "folder (tracking.store), which must then lie on the file system the nodes share"
    )


def _same_file(path: str, target: Path) -> bool:
    try:
        return Path(path).resolve() == target.resolve()
    except OSError:
        return False


def check_free(run_dir: RunDir) -> None:
    """Refuse at once, before any job is submitted, when a whole ``medseg run`` holds the folder.

    Raises:
        Busy: naming the process that holds it.
    """
    run_dir.root.mkdir(parents=True, exist_ok=True)
    with hold(run_dir.locks / "run.lock", str(run_dir.root), shared=True):
        pass
