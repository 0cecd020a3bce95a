"""Where a study's sqlite MLflow store lives, how it is written by several processes at once, and
how it keeps pointing at its artifacts when moved.

With ``tracking.uri`` unset, ``tracking.store`` chooses the store:

- ``project`` (the default): ``mlflow.db`` and ``mlartifacts/`` in the folder that holds the run
  folder (``runs/`` for ``runs/demo``), one store for every study of the project, so the MLflow UI
  shows them side by side;
- ``run``: ``mlflow.db`` and ``mlartifacts/`` inside the run folder.

A study goes on in the store it started in: ``run_state.json`` records it (``mlflow_store``, a path
relative to the run folder), so resumed runs, fold jobs, ``medseg ui`` and ``medseg compare`` find
it; run folders written before project stores existed keep their own ``mlflow.db``.

Fold jobs and studies of one project write one sqlite file at once: every write holds the store's
lock, ``.locks/mlflow.db.lock`` beside it (:func:`medseg.io.lock.hold`, waiting its turn), and so
does opening the store (creating its tables, relocating it, creating the experiment).

MLflow stores artifact locations as absolute ``file://`` URIs. When the folder holding a store has
moved (copied to another disk or machine), :func:`relocate` rewrites the old ``mlartifacts``
prefix to the new one in every place the store keeps it (experiments, runs, logged models,
registered model versions); it runs whenever medseg opens the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.config.models import TrackingConfig
from medseg.errors import MedsegError, mask_credentials
from medseg.io.lock import hold
from medseg.run_dir import RunDir

log = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"
SQLITE = "sqlite:///"
COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "logged_models": ("artifact_location",),
    "model_versions": ("source", "storage_location"),
}


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (relative or absolute), or None for any other store.

    Example:
        >>> sqlite_path("sqlite:///runs/mlflow.db"), sqlite_path("sqlite:////abs/m.db?timeout=9")
        (PosixPath('runs/mlflow.db'), PosixPath('/abs/m.db'))
        >>> sqlite_path("http://mlflow:5000") is None
        True
    """
    if not uri.startswith(SQLITE):
        return None
    return Path(uri.removeprefix(SQLITE).split("?", 1)[0])


def sqlite_uri(db: Path) -> str:
    return f"{SQLITE}{Path(db).resolve()}"


def project_db(run_dir: Path) -> Path:
    """The project store of a run folder: ``mlflow.db`` in the folder that holds it."""
    return Path(run_dir).resolve().parent / DB_NAME


def default_db(store: str, run_dir: Path) -> Path:
    """The sqlite file ``tracking.store`` names for a run folder (``project`` or ``run``)."""
    return project_db(run_dir) if store == "project" else RunDir(run_dir).mlflow_db.resolve()


def _recorded_db(run_dir: Path, state: dict[str, Any]) -> Path | None:
    """The sqlite store a started study logs to: as recorded, or the folder's own (older folders)."""
    recorded = state.get("mlflow_store")
    if isinstance(recorded, str) and "://" not in recorded:
        db = (Path(run_dir) / recorded).resolve()
        return db if db.is_file() else None
    own = RunDir(run_dir).mlflow_db
    return own.resolve() if recorded is None and own.is_file() else None


def study_uri(tracking: TrackingConfig, run_dir: Path) -> str:
    """The store ``medseg run`` logs to: ``tracking.uri``, else the sqlite store the study started
    in (it goes on there), else the one ``tracking.store`` names."""
    if tracking.uri:
        return tracking.uri
    state = RunDir(run_dir).read_state()
    db = _recorded_db(run_dir, state) if state.get("parent_run_id") else None
    configured = default_db(tracking.store, run_dir)
    if db is not None and db != configured:
        log.info(
            "%s: the study goes on in the MLflow store it started in, %s (tracking.store applies to "
            "new studies; --force starts this one afresh)",
            run_dir,
            db,
        )
    return sqlite_uri(db or configured)


def store_record(uri: str, run_dir: Path) -> str:
    """What ``run_state.json`` keeps of the store: a sqlite file relative to the run folder (so
    the project can move), else the URI with credentials masked."""
    db = sqlite_path(uri)
    if db is None:
        return mask_credentials(uri)
    return os.path.relpath(db.resolve(), Path(run_dir).resolve())


@dataclass(frozen=True)
class FolderStore:
    """The store of a run or project folder.

    Attributes:
        uri: its sqlite URI.
        experiment_id: the experiment of the run folder's study (None for a project folder).
        own: medseg's own layout (``mlflow.db`` in the run folder or the one holding it), relocated
            when opened; False for a sqlite file the study named in ``tracking.uri``.
    """

    uri: str
    experiment_id: str | None
    own: bool


def folder_store(folder: Path) -> FolderStore:
    """The store ``medseg ui`` and ``medseg compare`` open for a folder: a run folder's (as
    ``run_state.json`` records it), or a project folder's ``mlflow.db``.

    Raises:
        MedsegError: no store there, a file that is not one (:func:`check_store`), or the study
            logged to a server (named, credentials masked).
    """
    run = RunDir(folder)
    if run.state_file.is_file():
        state = run.read_state()
        recorded = state.get("mlflow_store")
        if isinstance(recorded, str) and "://" in recorded:
            raise MedsegError(
                f"{folder}: its study logged to the tracking server {recorded}; open that server's address"
            )
        db = _recorded_db(folder, state) or project_db(folder)
        if not db.is_file():
            where = f"{recorded} (relative to the run folder)" if recorded else f"{db}"
            raise MedsegError(f"{folder}: its MLflow store {where} is not there; was tracking off?")
        check_store(db)
        here = Path(folder).resolve()
        own = db.name == DB_NAME and db.parent in (here, here.parent)
        return FolderStore(sqlite_uri(db), state.get("experiment_id"), own)
    if (Path(folder) / DB_NAME).is_file():
        check_store(Path(folder) / DB_NAME)
        return FolderStore(sqlite_uri(Path(folder) / DB_NAME), None, True)
    raise MedsegError(
        f"{folder}: no MLflow store: neither a run folder of `medseg run` (run_state.json) nor a "
        f"folder holding {DB_NAME} (the project store beside the run folders)"
    )


def lock_file(db: Path) -> Path:
    return Path(db).resolve().parent / ".locks" / f"{Path(db).name}.lock"


def writing(uri: str) -> Any:
    """Hold a sqlite store's lock (waiting for it) while the block writes; nothing for servers."""
    db = sqlite_path(uri)
    if db is None:
        return contextlib.nullcontext()
    return hold(lock_file(db), f"the MLflow store {db}", wait=True)


def check_store(db: Path) -> None:
    """Refuse, in one line, a file that is not an MLflow sqlite store, before MLflow opens it.

    Raises:
        MedsegError: missing, empty, not SQLite, or SQLite without MLflow's tables.
    """
    db = Path(db)
    if not db.is_file():
        raise MedsegError(f"{db}: no such MLflow store; give the mlflow.db that `medseg run` logged to")
    if db.stat().st_size == 0:
        raise MedsegError(
            f"{db}: empty file (0 bytes), not an MLflow store; it was never written, or was truncated: "
            "remove it (a run logs to a new one) or restore it from a copy"
        )
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    except sqlite3.Error as err:
        raise MedsegError(
            f"{db}: not an MLflow store ({err}); is it the mlflow.db `medseg run` wrote?"
        ) from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise MedsegError(
            f"{db}: an SQLite file without MLflow's tables (experiments, runs), not an MLflow store"
        )


def relocate(folder: Path) -> int:
    """Point the store ``folder/mlflow.db`` at ``folder/mlartifacts``; how many values changed.

    ``folder`` is a run folder with its own store or a project folder.

    Example:
        >>> relocate(Path("no/such/folder"))
        0
    """
    db = Path(folder) / DB_NAME
    if not db.is_file():
        return 0
    new = (Path(folder) / ARTIFACTS).resolve().as_uri()
    changed = 0
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if "experiments" not in tables:
            return 0
        olds = [r[0] for r in con.execute("select artifact_location from experiments") if r[0]]
        for old in {o for o in olds if o.startswith("file://") and o.endswith(f"/{ARTIFACTS}") and o != new}:
            changed += _rewrite(con, tables, old, new)
    if changed:
        log.info("%s: the store has moved; %d artifact location(s) now point into it", folder, changed)
    return changed


def _rewrite(con: sqlite3.Connection, tables: set[str], old: str, new: str) -> int:
    changed = 0
    for table, columns in COLUMNS.items():
        if table not in tables:
            continue
        for col in columns:
            cur = con.execute(
                f"update {table} set {col} = ? || substr({col}, ?) where substr({col}, 1, ?) = ?",
                (new, len(old) + 1, len(old), old),
            )
            changed += cur.rowcount
    return changed


@contextlib.contextmanager
def opened(uri: str, own: bool) -> Iterator[None]:
    """Hold the store while it is opened; medseg's own store (``own``: project or run folder, not
    a ``tracking.uri``) is relocated first."""
    with writing(uri):
        db = sqlite_path(uri)
        if own and db is not None:
            relocate(db.parent)
        yield
