"""``medseg compare``: rank pipeline runs from any MLflow store on one metric over their folds.

Runs are chosen by experiment name (every ``medseg run`` parent run in it), by run id, or by
folder: a run folder gives its study's pipeline run (in the store ``run_state.json`` records), a
project folder holding ``mlflow.db`` gives the latest pipeline run of every run folder that logged
to it. Each run is labelled by its run folder (relative to the current folder when below it). For
each, the held-out metric ``test/<metric>/mean`` (or ``test/<metric>/<class>``) of every fold run
gives the mean and std over folds; runs are ranked (higher first for overlap metrics, lower first
for distances). The configuration keys whose values differ between the runs are listed beside
them. Writes ``comparison.csv``, ``comparison.md`` and ``comparison.png`` (mean ± std bars).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.evaluate.metrics import HIGHER_IS_BETTER
from medseg.io.atomic import atomic_path, write_text
from medseg.run_dir import RunDir
from medseg.tracking.store import folder_store, opened
from medseg.tracking.tracker import check_server

IGNORED_KEYS = ("output_dir",)  # differ between every pair of runs and say nothing about them


@dataclass
class RunSummary:
    """One pipeline run: its run folder, settings and the metric of each fold.

    Attributes:
        run_id: the MLflow run id.
        label: its run folder (with the start time when two runs share one).
        experiment: the experiment name.
        uri: the tracking URI it was read from.
        folds: the compared metric by fold number.
        params: the run's parameters.
        started: its start time, ms since the epoch.
    """

    run_id: str
    label: str
    experiment: str
    uri: str
    folds: dict[int, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    started: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.folds.values()))) if self.folds else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self.folds.values()))) if self.folds else math.nan


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    from medseg.tracking.tracker import route_mlflow_logging

    route_mlflow_logging()
    check_server(uri)
    return MlflowClient(tracking_uri=uri)


def shown_path(path: str | Path) -> str:
    """A run folder as a label: relative to the current folder when below it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _summary(client: Any, uri: str, run: Any, metric_key: str, label: str | None = None) -> RunSummary:
    experiment = client.get_experiment(run.info.experiment_id).name
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    folds = {}
    for child in children:
        value = child.data.metrics.get(metric_key)
        fold = child.data.tags.get("medseg.fold")
        if value is not None and fold is not None:
            folds[int(fold)] = float(value)
    params = dict(run.data.params)
    if label is None:
        folder = params.get("output_dir")
        label = shown_path(folder) if folder else run.info.run_name or run.info.run_id
    return RunSummary(run.info.run_id, label, experiment, uri, folds, params, int(run.info.start_time or 0))


def _parents(client: Any, experiment_ids: list[str]) -> list[Any]:
    if not experiment_ids:
        return []
    runs = client.search_runs(experiment_ids, filter_string="tags.`medseg.kind` = 'pipeline'")
    return sorted(runs, key=lambda r: r.info.start_time or 0)


def _store_runs(uri: str, experiments: list[str], run_ids: list[str], metric_key: str) -> list[RunSummary]:
    """The runs of ``--experiment`` and ``--run`` in the store at ``uri``."""
    client = _client(uri)
    found: list[RunSummary] = []
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = [e.name for e in client.search_experiments()]
            raise MedsegError(f"--experiment: no experiment '{name}' at {uri}; known: {known}")
        found += [_summary(client, uri, r, metric_key) for r in _parents(client, [exp.experiment_id])]
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception:
            raise MedsegError(f"--run: no run '{run_id}' at {uri}") from None
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            raise MedsegError(f"--run: {run_id} is a fold run; give its pipeline run {parent}")
        found.append(_summary(client, uri, run, metric_key))
    return found


def _folder_runs(folder: Path, metric_key: str) -> list[RunSummary]:
    """A run folder's pipeline run, or the latest of every run folder in a project store."""
    store = folder_store(folder)
    with opened(store.uri, store.own):
        client = _client(store.uri)
    run = RunDir(folder)
    if not run.state_file.is_file():  # a project folder: every study that logged to it
        experiments = [e.experiment_id for e in client.search_experiments()]
        latest = {}
        for r in _parents(client, experiments):  # oldest first: the latest per folder stays
            latest[r.data.params.get("output_dir") or r.info.run_id] = r
        if not latest:
            raise MedsegError(f"{folder}: its MLflow store holds no pipeline run")
        return [_summary(client, store.uri, r, metric_key) for r in latest.values()]
    parent_id = run.read_state().get("parent_run_id")
    if not parent_id:
        raise MedsegError(f"{folder}: run_state.json records no MLflow run; was tracking off?")
    try:
        parent = client.get_run(parent_id)
    except Exception:
        raise MedsegError(
            f"{folder}: its MLflow run {parent_id} is not in the store {store.uri}; was it deleted?"
        ) from None
    return [_summary(client, store.uri, parent, metric_key, shown_path(folder))]


def _unique_labels(runs: list[RunSummary]) -> list[RunSummary]:
    """Two runs of one folder (a study started afresh) are told apart by their start times."""
    for run in runs:
        if sum(r.label == run.label for r in runs) > 1:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started / 1000))
            run.label = f"{run.label} ({stamp})"
    return runs


def collect_runs(
    uri: str | None,
    experiments: list[str],
    run_ids: list[str],
    folders: list[Path],
    metric_key: str,
) -> list[RunSummary]:
    """Pipeline runs to compare, with their per-fold values of one metric.

    Args:
        uri: the tracking URI holding ``experiments`` and ``run_ids``.
        experiments: experiment names; each contributes all its pipeline runs.
        run_ids: pipeline run ids.
        folders: run folders of ``medseg run`` (their study's pipeline run) or project folders
            holding ``mlflow.db`` (the latest pipeline run of each run folder in it).
        metric_key: the fold metric compared.

    Returns:
        One summary per distinct run, labelled by its run folder.

    Raises:
        MedsegError: an unknown experiment, run or store, a fold run, or nothing to compare.
    """

    found: list[RunSummary] = []
    if experiments or run_ids:
        if uri is None:
            raise MedsegError("--uri: give the tracking URI that holds the experiments or run ids")
        found += _store_runs(uri, experiments, run_ids, metric_key)
    for folder in folders:
        found += _folder_runs(Path(folder), metric_key)
    unique = {r.run_id: r for r in found}
    if len(unique) < 1:
        raise MedsegError("nothing to compare: give --experiment, --run or run folders")
    return _unique_labels(list(unique.values()))


def differing_keys(runs: list[RunSummary]) -> list[str]:
    """Settings whose values differ between the runs."""
    keys = sorted({k for r in runs for k in r.params} - set(IGNORED_KEYS))
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def rank(runs: list[RunSummary], higher_is_better: bool) -> list[RunSummary]:
    """Runs ordered best first on their mean over folds."""

    def key(r: RunSummary) -> tuple[bool, float]:
        m = r.mean
        return (math.isnan(m), -m if higher_is_better else m)

    return sorted(runs, key=key)


def metric_key(metric: str) -> str:
    """The fold metric ``medseg compare --metric`` names: ``dice`` is the mean over classes.

    Example:
        >>> metric_key("dice"), metric_key("hd95/liver")
        ('test/dice/mean', 'test/hd95/liver')
    """
    return f"test/{metric}" if "/" in metric else f"test/{metric}/mean"


def write_comparison(runs: list[RunSummary], metric: str, out_dir: Path) -> dict[str, Path]:
    """Write ``comparison.csv``, ``.md`` and ``.png``, runs ranked best first.

    Args:
        runs: the runs to compare.
        metric: the fold metric compared.
        out_dir: the folder written into.

    Returns:
        The paths written, by kind.
    """

    base = metric.split("/")[0]
    ranked = rank(runs, HIGHER_IS_BETTER.get(base, True))
    diff = differing_keys(ranked)
    header = ["rank", "run", "experiment", f"{metric}_mean", f"{metric}_std", "n_folds", "run_id", *diff]
    rows = [
        [
            str(i),
            r.label,
            r.experiment,
            f"{r.mean:.6f}",
            f"{r.std:.6f}",
            str(len(r.folds)),
            r.run_id,
            *[r.params.get(k, "") for k in diff],
        ]
        for i, r in enumerate(ranked, start=1)
    ]
    out_dir = Path(out_dir)
    paths = {
        "csv": out_dir / "comparison.csv",
        "md": out_dir / "comparison.md",
        "png": out_dir / "comparison.png",
    }
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    direction = "higher" if HIGHER_IS_BETTER.get(base, True) else "lower"
    md = [
        f"# Comparison on {metric_key(metric)} (mean ± std over folds; {direction} is better)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows],
        "",
        "Configuration keys that differ: " + (", ".join(f"`{k}`" for k in diff) or "none"),
        "",
    ]
    write_text(paths["md"], "\n".join(md))
    _plot(ranked, metric, paths["png"])
    return paths


def _plot(runs: list[RunSummary], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(runs)), 3.2))
    ax.bar(range(len(runs)), [r.mean for r in runs], yerr=[r.std for r in runs], capsize=4, color="#4a7fb5")
    ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"test_{metric} (mean ± std over folds)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
