"""The run folder of ``medseg run``: the one module that knows its layout and ``run_state.json``.

    config.yaml  datalist.json  splits.json  intensity_stats.json  preview.png  timing.json
    provenance.json (medseg version and commit, machine, device, config digest)
    run_state.json (MLflow run ids, their store, trained epochs per fold, so a killed run resumes)
    fold_k/checkpoints/{best,last}.pt  fold_k/history.csv  fold_k/inner_split.json
    fold_k/predictions/<id>.png|.nii.gz  fold_k/metrics.csv  fold_k/overlays/
    postprocessing.json  review.json (choices made from the held-out cases)
    fold_k/metrics_raw.csv  fold_k/predictions_raw/  fold_k/metrics_{foreground,each}.csv
    (``infer.largest_component: auto``: before post-processing, and with each variant)
    report.html  report.md  summary.json
    mlflow.db  mlartifacts/ (tracking.store: run; by default the project's store is beside the folder)
    .locks/ (who runs here: the folder, each fold, and the shared files; see :meth:`RunDir.running`)
    jobs/ (the scripts and logs of ``--executor`` jobs, and ``submitted.json``)

A fold is *finished* once its held-out cases are scored: ``fold_k/metrics.csv`` beside
``fold_k/checkpoints/best.pt``. It is *done* for a pipeline of ``train.epochs`` epochs when it is
finished and ``run_state.json`` records that many trained epochs (a larger ``train.epochs``
extends it).

Example:
    >>> run = RunDir("runs/demo")
    >>> run.fold(2).best.as_posix(), run.fold(2).prediction("IMD002", 2).as_posix()
    ('runs/demo/fold_2/checkpoints/best.pt', 'runs/demo/fold_2/predictions/IMD002.png')
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.io.atomic import write_json
from medseg.io.case import Case
from medseg.io.lock import hold
from medseg.io.names import file_stem, inside

log = logging.getLogger(__name__)

FOLD_NAME = re.compile(r"fold_(\d+)$")


@dataclass(frozen=True)
class FoldDir:
    """The files of one fold; the properties name every path in ``fold_k/``.

    Attributes:
        path: the fold folder.
        index: the fold number.
    """

    path: Path
    index: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def inner_split(self) -> Path:
        return self.path / "inner_split.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def postprocessing(self) -> Path:
        """Held-out Dice with and without each post-processing variant (``largest_component: auto``)."""
        return self.path / "postprocessing.csv"

    @property
    def metrics_raw(self) -> Path:
        """``largest_component: auto``: the held-out metrics before post-processing."""
        return self.path / "metrics_raw.csv"

    def metrics_variant(self, variant: str) -> Path:
        """``largest_component: auto``: the held-out metrics with one post-processing variant."""
        return self.path / f"metrics_{variant}.csv"

    @property
    def predictions_raw(self) -> Path:
        """The held-out predictions before the post-processing adopted from cross-validation."""
        return self.path / "predictions_raw"

    @property
    def overlays(self) -> Path:
        return self.path / "overlays"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions"

    def prediction(self, case_id: str, spatial_dims: int) -> Path:
        """Held-out prediction of a case: PNG for 2D workflows, NIfTI for 3D, named by the case id
        (shortened with a hash when it would not fit a file name: :func:`~medseg.io.names.file_stem`;
        ids are checked at ingest to name files, :func:`~medseg.io.names.inside` checks once more)."""
        return inside(self.predictions, f"{file_stem(case_id)}{'.png' if spatial_dims == 2 else '.nii.gz'}")

    def overlay(self, case_id: str) -> Path:
        """The report's overlay picture of a held-out case, named as its prediction."""
        return inside(self.overlays, f"{file_stem(case_id)}.png")

    @property
    def is_finished(self) -> bool:
        return self.best.is_file() and self.metrics.is_file()


class RunDir:
    """Paths of a run folder, its finished folds and ``run_state.json``.

    The only place that knows the layout of a run folder.

    Args:
        root: the run folder (``output_dir`` of the pipeline).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    config = property(lambda self: self.root / "config.yaml")
    datalist = property(lambda self: self.root / "datalist.json")
    splits = property(lambda self: self.root / "splits.json")
    intensity_stats = property(lambda self: self.root / "intensity_stats.json")
    preview = property(lambda self: self.root / "preview.png")
    timing = property(lambda self: self.root / "timing.json")
    provenance = property(lambda self: self.root / "provenance.json")
    fingerprint = property(lambda self: self.root / "fingerprint.json")
    postprocessing = property(lambda self: self.root / "postprocessing.json")
    review = property(lambda self: self.root / "review.json")
    state_file = property(lambda self: self.root / "run_state.json")
    report_html = property(lambda self: self.root / "report.html")
    report_md = property(lambda self: self.root / "report.md")
    summary = property(lambda self: self.root / "summary.json")
    mlflow_db = property(lambda self: self.root / "mlflow.db")
    mlartifacts = property(lambda self: self.root / "mlartifacts")

    locks = property(lambda self: self.root / ".locks")
    jobs = property(lambda self: self.root / "jobs")  # scripts and logs of --executor jobs
    # what `--force` removes: every file a run writes, except the MLflow store and its artifacts
    OUTPUTS = (
        "config.yaml",
        "datalist.json",
        "splits.json",
        "intensity_stats.json",
        "preview.png",
        "timing.json",
        "provenance.json",
        "run_state.json",
        "postprocessing.json",
        "review.json",
        "report.html",
        "report.md",
        "summary.json",
    )

    def fold(self, index: int) -> FoldDir:
        return FoldDir(self.root / f"fold_{index}", index)

    def folds(self) -> list[FoldDir]:
        """Every fold folder present, in fold order."""
        found = [m for p in self.root.glob("fold_*") if p.is_dir() and (m := FOLD_NAME.match(p.name))]
        return [self.fold(i) for i in sorted(int(m.group(1)) for m in found)]

    def finished_folds(self) -> list[FoldDir]:
        """Folds whose held-out cases are scored (``metrics.csv`` beside ``best.pt``)."""
        return [f for f in self.folds() if f.is_finished]

    def scored_folds(self) -> list[FoldDir]:
        """Folds with a ``metrics.csv`` (what a report is built from)."""
        return [f for f in self.folds() if f.metrics.is_file()]

    # ------------------------------------------------------------------ who runs here
    @contextmanager
    def running(self, folds: list[int] | None) -> Iterator[None]:
        """Claim the folder for one run (``folds`` None: the whole study) or for fold jobs.

        A whole run holds the folder alone; ``--fold K`` jobs share it, each holding its folds
        alone. Any other combination is refused at once, naming the process that holds it.

        Raises:
            Busy: another run holds the folder, or one of ``folds``.
        """
        with ExitStack() as stack:
            stack.enter_context(hold(self.locks / "run.lock", str(self.root), shared=folds is not None))
            for k in folds or []:
                stack.enter_context(hold(self.locks / f"fold_{k}.lock", f"fold {k} of {self.root}"))
            yield

    def shared_files(self) -> Any:
        """Hold the files every fold job reads and writes (config, datalist, state, report) while
        one job updates them; other jobs wait."""
        return hold(self.locks / "files.lock", f"the shared files of {self.root}", wait=True)

    def clear(self) -> None:
        """Remove what earlier runs wrote here (``--force``); the MLflow store and anything else stay."""
        for name in self.OUTPUTS:
            (self.root / name).unlink(missing_ok=True)
        for fold in self.folds():
            shutil.rmtree(fold.path)

    def has_models(self) -> bool:
        """Whether any fold has trained weights here."""
        return any(f.last.is_file() or f.best.is_file() for f in self.folds())

    # ------------------------------------------------------------------ datalist.json
    def write_datalist(self, root: Path, cases: list[Case], bad: list[dict[str, str]]) -> None:
        """The verified cases (their files, shape and spacing) and the skipped ones with why."""
        write_json(
            self.datalist, {"root": str(root), "cases": [c.to_json() for c in cases], "bad_cases": bad}
        )

    def read_cases(self) -> list[Case]:
        """The verified cases of ``datalist.json`` (older run folders' entries included)."""
        return [Case.from_json(c) for c in json.loads(self.datalist.read_text())["cases"]]

    # ------------------------------------------------------------------ run_state.json
    def read_state(self) -> dict[str, Any]:
        """What an earlier (perhaps killed) run in this folder recorded: MLflow run ids, trained
        epochs per fold. An unreadable file starts afresh, with a warning."""
        empty: dict[str, Any] = {"parent_run_id": None, "folds": {}}
        if not self.state_file.is_file():
            return empty
        try:
            state = json.loads(self.state_file.read_text())
        except json.JSONDecodeError:
            log.warning("%s is unreadable; starting new MLflow runs", self.state_file)
            return empty
        state.setdefault("folds", {})
        return dict(state)

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_file, state)

    def record_fold(self, index: int, **fields: Any) -> dict[str, Any]:
        """Update one fold's entry of ``run_state.json`` as it is on disk now (other fold jobs may
        have written theirs meanwhile) and return the whole state."""
        with self.shared_files():
            state = self.read_state()
            state["folds"].setdefault(str(index), {}).update(fields)
            self.write_state(state)
        return state

    def fold_is_done(self, state: dict[str, Any], index: int, epochs: int) -> bool:
        entry = state["folds"].get(str(index), {})
        return bool(entry.get("done_epochs", 0) >= epochs and self.fold(index).metrics.is_file())
