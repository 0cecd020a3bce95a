"""The ``medseg`` command: parsing and one error wrapper only.

Every command goes through :func:`command`, which sets up logging, turns a :class:`MedsegError`
(also when MONAI wraps it) into one line on stderr and exit code 1, running out of memory where no
case names it into one line with what to do and exit code 1, an unexpected error into one line and
exit code 3, and Ctrl-C into exit code 130; ``medseg --debug <command>`` prints the full
traceback instead. ``predict`` exits with 2 when some inputs failed.

Heavy libraries (torch, MONAI, MLflow) load with the stage modules, so this is the one module that
imports medseg's stages inside its functions: ``medseg --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from medseg import __version__
from medseg.errors import MedsegError, mask_credentials, medseg_cause, out_of_memory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Medical image segmentation studies from one YAML file.",
    pretty_exceptions_enable=False,
)

PipelineArg = Annotated[Path, typer.Argument(help="pipeline YAML file, e.g. pipelines/isic.yaml")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a setting: key=value (repeatable)")
]
EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130
_options = {"debug": False}
_on_exit = ExitStack()  # what a command made that goes on its way out, whatever happened
F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medseg {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an error")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Medical image segmentation studies from one YAML file."""
    _options["debug"] = debug


def _setup() -> None:
    from medseg.io.privacy import log_filter
    from medseg.progress import TqdmHandler

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[TqdmHandler()],
    )
    logging.captureWarnings(True)  # library warnings (pydicom's name files) through the same filters
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")  # it logs them too
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _MaskCredentials) for f in handler.filters):
            handler.addFilter(log_filter())  # names that may not be shown, control characters
            handler.addFilter(_MaskCredentials())
    for noisy in ("alembic", "mlflow", "PIL", "matplotlib", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # HTTP to a PACS: urllib3's retry lines, dicomweb-client's request notices and its retrying
    # package's tracebacks would fall between medseg's lines; what went wrong reaches the user as
    # medseg's own one-line error (naming the PACS and what to do). `medseg --debug` shows them.
    for library in ("urllib3", "dicomweb_client", "retrying"):
        logging.getLogger(library).setLevel(logging.WARNING if _options["debug"] else logging.CRITICAL)
    # MONAI logs this on every LoadImage once pydicom is imported; the pydicom decoders still work.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*NvImgCodecPydicomReader.*")
    warnings.filterwarnings("ignore", message=".*get_mask_edges.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*labels.*", category=FutureWarning)


class _MaskCredentials(logging.Filter):
    """No URI's user and password in any log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_credentials(record.getMessage()), None
        return True


def _exit(message: str, code: int) -> typer.Exit:
    """The one line of an error: credentials masked, control characters of a crafted file name
    escaped (``\\x1b``), so an error cannot drive the terminal."""
    from medseg.io.privacy import escape_controls

    typer.echo(escape_controls(mask_credentials(message)), err=True)
    return typer.Exit(code=code)


def command(interrupted: str = "interrupted") -> Callable[[F], F]:
    """Register a command behind the one wrapper: logging, clean errors, exit codes."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _setup()
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except KeyboardInterrupt:
                raise _exit(interrupted, EXIT_INTERRUPTED) from None
            except Exception as err:
                if _options["debug"]:  # masked as every other line is
                    typer.echo(mask_credentials(traceback.format_exc()).rstrip(), err=True)
                cause = medseg_cause(err)
                if cause is not None:
                    raise _exit(f"error: {cause}", EXIT_ERROR) from None
                if out_of_memory(err):
                    raise _exit(
                        f"error: out of memory ({type(err).__name__}: {str(err)[:200]}); free memory (other "
                        "jobs on this machine) or run where there is more; `medseg --debug ...` shows where",
                        EXIT_ERROR,
                    ) from None
                raise _exit(
                    f"error: unexpected {type(err).__name__}: {err}\n"
                    "run again with `medseg --debug ...` for the full traceback",
                    EXIT_INTERNAL,
                ) from None
            finally:
                _on_exit.close()

        app.command()(wrapper)
        return fn

    return register


ExecutorOpt = Annotated[
    str | None,
    typer.Option(help="slurm or local: run the work as jobs, with the pipeline's executor settings"),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="follow the Slurm jobs to their end, a line each time one changes")
]
DevicesOpt = Annotated[
    str | None, typer.Option(help="--executor local: one process per device, e.g. 0,1,2,3")
]
CancelOpt = Annotated[
    bool, typer.Option("--cancel-on-interrupt", help="Ctrl-C while waiting cancels the jobs without asking")
]


def _request(executor: str, wait: bool, devices: str | None, cancel: bool) -> Any:
    """How ``--executor`` was asked for (:class:`medseg.cluster.submit.Request`)."""
    from medseg.cluster.submit import Request

    if executor not in ("slurm", "local"):
        raise MedsegError(f"--executor {executor}: expected slurm or local")
    found = [d.strip() for d in (devices or "").split(",") if d.strip()]
    if devices is not None and (executor != "local" or not all(d.isdigit() for d in found) or not found):
        raise MedsegError(f"--devices {devices}: give device numbers such as 0,1,2,3, with --executor local")
    ask = lambda question: sys.stdin.isatty() and typer.confirm(question, default=False)  # noqa: E731
    return Request(executor, wait, found or None, cancel, ask, typer.echo)  # type: ignore[arg-type]


def _no_executor(wait: bool, devices: str | None, cancel: bool) -> None:
    if wait or devices is not None or cancel:
        raise MedsegError(
            "--wait, --devices, --cancel-on-interrupt and --parts go with --executor slurm or local"
        )


@command(interrupted="interrupted: finished folds and their files are kept")
def run(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    fold: Annotated[
        list[int] | None, typer.Option(help="run only this fold (repeatable): folds as separate jobs")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="start afresh: delete the fold models and results in output_dir")
    ] = False,
    executor: ExecutorOpt = None,
    wait: WaitOpt = False,
    devices: DevicesOpt = None,
    cancel_on_interrupt: CancelOpt = False,
    stage: Annotated[
        str, typer.Option(help="all; folds: train only, leave the report to `--stage report` (cluster jobs)")
    ] = "all",
) -> None:
    """Run a whole study: ingest, cross-validated training, inference, evaluation, report.

    Started again with the same command, a killed run resumes from its last checkpoints; with more
    train.epochs it extends them. Other changed settings are refused unless --force. With
    --executor slurm the folds left run as a job array and the report as a job after it."""
    from medseg.config.load import load_pipeline

    overrides = list(set_ or []) + ([f"split.folds={list(fold)}"] if fold else [])
    if executor is not None:
        from medseg.cluster.study import run_study

        if stage != "all":
            raise MedsegError("--stage is what the jobs of --executor run; leave it out")
        code = run_study(pipeline, overrides, _request(executor, wait, devices, cancel_on_interrupt), force)
        raise typer.Exit(code)
    _no_executor(wait, devices, cancel_on_interrupt)
    if stage not in ("all", "folds", "report"):
        raise MedsegError(f"--stage {stage}: expected all, folds or report")
    cfg = load_pipeline(pipeline, overrides, need_data=stage != "report")  # before torch is imported
    from medseg.pipeline import run as run_pipeline

    run_dir = run_pipeline(cfg, force=force, stage=stage)  # type: ignore[arg-type]
    typer.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")


@command()
def plan(
    data: Annotated[
        Path,
        typer.Argument(help="the data folder: ISIC layout, cases.csv table, nnU-Net or Decathlon data set"),
    ],
    workflow: Annotated[
        str, typer.Option(help="auto (from the folder), isic, ct, mammo, table, nnunet or decathlon")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where the study will run")] = "auto",
    gpu_memory: Annotated[str, typer.Option(help="memory the plan fills, e.g. 24GB")] = "8GB",
    budget: Annotated[
        str | None, typer.Option(help="wall time the whole 5-fold study may take, e.g. 30m; default none")
    ] = None,
    out: Annotated[Path, typer.Option(help="the pipeline file written")] = Path("pipelines/plan.yaml"),
) -> None:
    """Plan a study from the data and the compute budget: fingerprint, rules, calibration.

    Writes the pipeline file (each value with its reason), fingerprint.json and <name>.plan.json
    beside it; `medseg run` runs the file unchanged."""
    from medseg.plan.fingerprint import WORKFLOWS
    from medseg.plan.study import parse_duration, parse_memory, plan_study

    if workflow not in WORKFLOWS:
        raise MedsegError(f"--workflow {workflow}: expected one of {', '.join(WORKFLOWS)}")
    if device not in ("auto", "cpu", "cuda"):
        raise MedsegError(f"--device {device}: expected auto, cpu or cuda")
    seconds = parse_duration(budget) if budget is not None else None
    if seconds is not None and seconds <= 0:
        raise MedsegError(f"--budget {budget}: must be positive")
    summary = plan_study(data, workflow, out, device, parse_memory(gpu_memory), seconds)
    typer.echo(
        f"plan: {out} (expected {summary['expected_seconds'] / 60:.1f} min on {summary['device']}: "
        f"{summary['epochs']} epochs, batch {summary['batch_size']}, patch {summary['patch']})\n"
        f"run it: medseg run {out}"
    )


@command()
def validate(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    show: Annotated[
        bool, typer.Option("--show", help="print the resolved config, every default included")
    ] = False,
) -> None:
    """Check a pipeline file (keys, values, component arguments) without running it."""
    from medseg.config.load import dump_config, load_pipeline

    cfg = load_pipeline(pipeline, set_)
    typer.echo(dump_config(cfg) if show else f"{pipeline}: valid")


@command()
def preview(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG path; default <output_dir>/preview.png")
    ] = None,
) -> None:
    """Write a grid of training cases after the training transforms, mask outlines drawn."""
    from medseg.config.load import load_pipeline
    from medseg.pipeline import ingest
    from medseg.report.preview import preview_grid
    from medseg.run_dir import RunDir

    cfg = load_pipeline(pipeline, set_)
    run_dir = RunDir(cfg.output_dir)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    cases, _ = ingest(cfg, run_dir.root)
    path = preview_grid(cfg, cases, output or run_dir.preview)
    typer.echo(f"preview: {path}")


@command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder written by `medseg run`")]) -> None:
    """Rebuild report.html, report.md and summary.json of a run folder."""
    from medseg.report.pages import write_report

    write_report(run_dir)
    typer.echo(f"report: {run_dir / 'report.html'}")


@command()
def ui(
    folder: Annotated[
        Path, typer.Argument(help="a run folder of `medseg run`, or a project folder holding mlflow.db")
    ],
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 picks a free one")] = 5000,
    wait: Annotated[float, typer.Option(help="seconds to wait for the server to answer")] = 120.0,
) -> None:
    """Open the MLflow UI on the store a run folder's study logged to, or a project's store
    (127.0.0.1, one worker, no job runner), and print the address of its training view; Ctrl-C
    stops it."""
    import signal

    from medseg.tracking.ui import serve

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)  # `kill` ends the server too, not only this process
    serve(folder, port or None, wait, typer.echo)


def _numbers(text: str | None, what: str, kind: type = float) -> list | None:
    if text is None:
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise MedsegError(f"{what}: expected comma-separated numbers, got '{text}'") from None


PredOpt = Annotated[Path, typer.Option("--pred", help="folder of predicted masks (a predict output folder)")]
RefOpt = Annotated[Path, typer.Option("--ref", help="folder of reference masks")]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="run folder (or its config.yaml) of the model that predicted: its class names, label map "
        "(data.labels) and Surface Dice tolerances"
    ),
]
ClassesOpt = Annotated[
    str | None,
    typer.Option(help="classes in the predictions, e.g. liver=1,spleen=2; with --model, a subset: liver"),
]
RefLabelsOpt = Annotated[
    str | None,
    typer.Option(
        help="values of the classes in the references, e.g. liver=5,spleen=1,kidneys=2+3, or a JSON/YAML "
        "label map file; other values are background"
    ),
]
ToleranceOpt = Annotated[
    str | None,
    typer.Option(help="Surface Dice tolerance(s) in mm, one or one per class (default: the model's; 2)"),
]
RequireAllOpt = Annotated[
    bool, typer.Option(help="refuse references without a prediction (default: score the cases in common)")
]
PixelsOpt = Annotated[
    int, typer.Option(min=1, help="pictures with more pixels are refused unread (decompression bombs)")
]


@command()
def evaluate(
    pred: PredOpt,
    ref: RefOpt,
    out: Annotated[Path, typer.Option(help="where metrics.csv and summary.json go")] = Path("evaluation"),
    model: ModelDirOpt = None,
    classes: ClassesOpt = None,
    ref_labels: RefLabelsOpt = None,
    spacing: Annotated[
        str | None, typer.Option(help="voxel spacing in mm, e.g. 0.8,0.8,2.0 (default: from the files)")
    ] = None,
    labels: Annotated[str | None, typer.Option(help="unnamed values to score, e.g. 1,2")] = None,
    tolerance: ToleranceOpt = None,
    pred_suffix: Annotated[str, typer.Option(help="dropped from prediction names before pairing")] = "",
    ref_suffix: Annotated[str, typer.Option(help="dropped from reference names, e.g. _segmentation")] = "",
    require_all: RequireAllOpt = False,
    max_image_pixels: PixelsOpt = 89_478_485,
) -> None:
    """Score a folder of predictions against a folder of references (PNG, NIfTI, DICOM, DICOM SEG)."""
    from medseg.evaluate import classes as scored
    from medseg.evaluate.folders import evaluate_folders
    from medseg.io.raster import set_pixel_limit

    set_pixel_limit(max_image_pixels)
    by_model = scored.model_classes(model) if model is not None else None
    ref_map, whole = scored.label_map(ref_labels, "--ref-labels") if ref_labels is not None else (None, False)
    summary = evaluate_folders(
        pred,
        ref,
        out,
        spacing=_numbers(spacing, "--spacing"),
        labels=_numbers(labels, "--labels", int),
        tolerance=_numbers(tolerance, "--tolerance"),
        pred_suffix=pred_suffix,
        ref_suffix=ref_suffix,
        classes=scored.resolve(by_model, classes, ref_map, whole),
        require_all=require_all,
        model_values=None if by_model is None else {c.value for c in by_model},
    )
    typer.echo("\n".join(_evaluation_lines(summary)))
    typer.echo(f"metrics: {out / 'metrics.csv'}, summary: {out / 'summary.json'}")


def _evaluation_lines(summary: dict[str, Any]) -> list[str]:
    """What ``medseg evaluate`` prints: a line per class (and the mean), then the references that
    were not scored."""
    lines = []
    for key, stats in summary["labels"].items():
        hd = stats["hd95"]
        lines.append(
            f"{key}: Dice {stats['dice']['mean']:.4f} ± {stats['dice']['std']:.4f}, "
            f"HD95 {hd['mean']:.3f} ({hd['n_infinite']} infinite, "
            f"capped mean {hd.get('capped_mean', float('nan')):.3f}), "
            f"NSD {stats['nsd']['mean']:.4f} over {stats['counts']['n']} cases"
        )
    if missing := summary["references_without_prediction"]:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        lines.append(f"{len(missing)} reference(s) without a prediction, not scored: {shown} (--require-all)")
    return lines


@command()
def compare(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="run folders (each its study's pipeline run), or a project folder holding mlflow.db "
            "(the latest pipeline run of every run folder in it)"
        ),
    ] = None,
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (sqlite:///..., http://...)")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help="experiment name (repeatable)")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", help="pipeline run id (repeatable)")] = None,
    metric: Annotated[
        str,
        typer.Option(help="held-out metric: dice, hd95, ... (mean over classes) or a class's: dice/liver"),
    ] = "dice",
    out: Annotated[Path, typer.Option(help="where comparison.csv/.md/.png go")] = Path("comparison"),
) -> None:
    """Rank MLflow pipeline runs on a metric (mean ± std over folds) and show differing settings."""
    from medseg.tracking.compare import collect_runs, metric_key, write_comparison

    runs = collect_runs(uri, experiment or [], run or [], run_dirs or [], metric_key(metric))
    paths = write_comparison(runs, metric, out)
    typer.echo(paths["md"].read_text())
    typer.echo(f"written: {paths['csv']}, {paths['md']}, {paths['png']}")


ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="run folder, runs:/<id> or models:/<name>/<version>")
]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", "-i", help="folder tree of DICOM, NIfTI or PNG/JPEG, or dicomweb+http://..."),
]
FoldOpt = Annotated[list[int] | None, typer.Option(help="use only this fold's model (repeatable)")]
TrackingUriOpt = Annotated[
    str | None, typer.Option(help="MLflow store of a runs:/ model, e.g. sqlite:///runs/mlflow.db")
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: train.device)")]
LogPathsOpt = Annotated[
    bool, typer.Option(help="show DICOM file and folder names in manifest.csv and the log")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="GPU: reading processes (default: spare cores, at most 4); CPU: processes segmenting "
        "whole inputs, one thread each (default: one per core, at most 8); 0, or fewer inputs: all "
        "in one process",
    ),
]
PartOpt = Annotated[
    str | None, typer.Option(help="I/N: this job's share of the inputs, into the same --output")
]
MergeOpt = Annotated[
    bool, typer.Option(help="only merge the --part jobs' manifests and summaries in --output")
]
StudyOpt = Annotated[list[str] | None, typer.Option(help="DICOMweb: StudyInstanceUID (repeatable)")]
SeriesOpt = Annotated[list[str] | None, typer.Option(help="DICOMweb: SeriesInstanceUID (repeatable)")]
ModalityOpt = Annotated[str | None, typer.Option(help="DICOMweb: only series of this Modality")]
SinceOpt = Annotated[str | None, typer.Option(help="DICOMweb: studies from this date, YYYY-MM-DD")]
SendOpt = Annotated[str | None, typer.Option(help="store each DICOM SEG with STOW-RS at dicomweb+http://...")]
WrittenClassesOpt = Annotated[
    str | None, typer.Option(help="write only these classes, e.g. liver,spleen (predict.classes)")
]
PartsOpt = Annotated[
    int | None, typer.Option("--parts", min=2, help="--executor: N jobs over --part I/N, then a merge")
]
# a DICOMweb query as given: studies, series, modality, date, and where results are sent
PacsQuery = tuple[list[str] | None, list[str] | None, str | None, str | None, str | None]


@command(interrupted="interrupted: finished inputs are in manifest.csv; run again to go on")
def predict(
    output: Annotated[Path, typer.Option("--output", "-o", help="where predictions and manifest.csv go")],
    model: ModelOpt = None,
    input_dir: InputOpt = None,
    set_: SetOpt = None,
    fold: FoldOpt = None,
    tracking_uri: TrackingUriOpt = None,
    device: DeviceOpt = None,
    classes: WrittenClassesOpt = None,
    log_paths: LogPathsOpt = False,
    workers: WorkersOpt = None,
    part: PartOpt = None,
    merge: MergeOpt = False,
    study: StudyOpt = None,
    series: SeriesOpt = None,
    modality: ModalityOpt = None,
    since: SinceOpt = None,
    send: SendOpt = None,
    executor: ExecutorOpt = None,
    parts_: PartsOpt = None,
    wait: WaitOpt = False,
    devices: DevicesOpt = None,
    cancel_on_interrupt: CancelOpt = False,
) -> None:
    """Segment every selected series or image under a folder with the ensemble of a study's folds.

    Writes <name>.nii.gz (or .png) on the input's own grid, a DICOM SEG for DICOM inputs, overlays
    for 2D inputs, manifest.csv and summary.json. Run again, it skips what is done. With --part I/N,
    N jobs share the inputs; the last to finish (or --merge) writes manifest.csv and summary.json."""
    set_ = _with_classes(set_, classes)
    if merge:
        return _merge_parts(output)
    if model is None or input_dir is None:
        raise MedsegError("--model and --input are needed (only --merge goes without them)")
    _predict_checks(output, model, input_dir, device, part, send, set_ or [])
    since = _date(since)  # checked before any model loads
    from medseg.infer import parts
    from medseg.io.dicomweb import is_dicomweb

    share = parts.parse_part(part) if part else parts.WHOLE
    pacs = is_dicomweb(input_dir)
    request = _parts_request(executor, parts_, part, pacs, wait, devices, cancel_on_interrupt)
    _check_predict_places(model, input_dir, output, pacs)
    bundle = _predict_model(model, set_, fold, tracking_uri, output)
    if request is not None:
        from medseg.cluster.batch import predict_parts

        forward = ["--model", model, "--input", input_dir, *_forward(set_, fold, tracking_uri, device)]
        forward += ["--workers", str(workers)] if workers is not None else []
        forward += ["--log-paths"] if log_paths else []
        code = predict_parts(output, parts_ or 2, forward, bundle.cfg.executor, bundle.cfg.name, request)
        raise typer.Exit(code)
    query = (study, series, modality, since, send)
    summary = _segment_inputs(bundle, input_dir, output, device, share, (log_paths, workers), query)
    _echo_predicted(summary, output, share)
    if summary["failed"]:
        raise typer.Exit(code=EXIT_PARTIAL)


def _merge_parts(output: Path) -> None:
    """``predict --merge``: the --part jobs' manifests and summaries in ``output`` as one."""
    from medseg.infer import parts

    summary = parts.merge(output, strict=True)
    assert summary is not None
    typer.echo(_predict_result(summary, output / "manifest.csv"))


def _with_classes(set_: list[str] | None, classes: str | None) -> list[str] | None:
    """``--classes liver,spleen`` as a ``--set`` of ``predict.classes``, so ``--executor`` jobs get it.

    Example:
        >>> _with_classes(None, "liver, spleen")
        ['predict.classes=[liver, spleen]']
    """
    if classes is None:
        return set_
    return [*(set_ or []), f"predict.classes=[{', '.join(c.strip() for c in classes.split(','))}]"]


def _echo_predicted(summary: dict, output: Path, share: tuple[int, int]) -> None:
    """The batch's result line (the merged batch's when this part finished it), and the PACS's."""
    from medseg.infer import parts

    merged = summary.get("merged")
    name = "manifest.csv" if merged or share == parts.WHOLE else parts.manifest_name(share)
    typer.echo(_predict_result(merged or summary, output / name))
    if "pacs" in summary:
        from medseg.infer.pacs import pacs_line

        typer.echo(pacs_line(summary["pacs"]))


def _predict_model(
    model: str, set_: list[str] | None, fold: list[int] | None, uri: str | None, output: Path
) -> Any:
    """The model bundle of ``predict``; parts started together fetch a runs:/ or models:/ model once."""
    from medseg.infer import parts
    from medseg.io.lock import hold
    from medseg.tracking.models import load_bundle

    with hold(output / parts.LOCKS / "model.lock", f"the model copy in {output}", wait=True):
        return load_bundle(model, set_, fold, uri, output / ".model")


def _segment_inputs(
    bundle: Any,
    input_dir: str,
    output: Path,
    device: str | None,
    share: tuple[int, int],
    options: tuple[bool, int | None],
    query: PacsQuery,
) -> dict:
    """Segment a folder's inputs, or a DICOMweb query's series, with the loaded model.

    Args:
        options: ``--log-paths`` and ``--workers``.
        query: the studies, series, modality, date and STOW-RS address given (DICOMweb only).

    Returns:
        The batch's summary.
    """
    from medseg.infer import parts
    from medseg.io.dicomweb import is_dicomweb
    from medseg.runtime import pick_device

    study, series, modality, since, send = query
    log_paths, workers = options
    where = pick_device(device or bundle.cfg.train.device)
    if is_dicomweb(input_dir):
        from medseg.infer.pacs import Query, predict_pacs

        if share != parts.WHOLE:
            raise MedsegError("--part splits a folder of inputs; a DICOMweb query runs as one job")
        found = Query(study or [], series or [], modality, since)
        return predict_pacs(
            bundle, input_dir, output, where, found, send, log_paths=log_paths, workers=workers
        )
    if send is not None:
        raise MedsegError("--send stores results in a PACS read with --input dicomweb+http://...")
    from medseg.infer.batch import predict_folder

    return predict_folder(bundle, Path(input_dir), output, where, log_paths, workers, share)


def _check_predict_places(model: str, input_dir: str, output: Path, pacs: bool) -> None:
    """Before torch and the models load, once the options are known to go together: a folder input
    that is missing, an ``--output`` that is a file or inside the input, a run folder without
    ``config.yaml`` (:mod:`medseg.infer.places`); then, on the way out of the command, the locks no
    other job holds and an output folder left empty are removed."""
    from medseg.infer import parts
    from medseg.infer.places import check_model, check_output, check_places

    if pacs:
        check_output(output)
    else:
        check_places(Path(input_dir), output)
    check_model(model)
    _on_exit.enter_context(parts.tidied(output))


def _parts_request(
    executor: str | None,
    n: int | None,
    part: str | None,
    pacs: bool,
    wait: bool,
    devices: str | None,
    cancel: bool,
) -> Any:
    """How ``predict --executor`` was asked for, or None without it; the options that go with it checked."""
    if executor is None:
        _no_executor(wait or n is not None, devices, cancel)
        return None
    if pacs:
        raise MedsegError("--executor splits a folder of inputs into jobs; a DICOMweb query runs as one job")
    if part or n is None:
        raise MedsegError("--executor runs the batch as --parts N jobs: give --parts N (not --part)")
    return _request(executor, wait, devices, cancel)


def _forward(
    set_: list[str] | None, fold: list[int] | None, uri: str | None, device: str | None
) -> list[str]:
    """The predict options each part job is given again."""
    return [
        *[a for s in set_ or [] for a in ("--set", s)],
        *[a for k in fold or [] for a in ("--fold", str(k))],
        *(["--tracking-uri", uri] if uri else []),
        *(["--device", device] if device else []),
    ]


def _predict_checks(
    output: Path,
    model: str,
    input_dir: str,
    device: str | None,
    part: str | None,
    send: str | None,
    overrides: list[str],
) -> None:
    """What ``predict`` can refuse before torch and the models load (about a second, not ten): the
    output and device, and for a PACS its URLs, credentials and one answer."""
    from medseg.infer.places import check_output
    from medseg.io.dicomweb import is_dicomweb

    check_output(output)
    if device not in (None, "auto", "cpu", "cuda"):
        raise MedsegError(f"--device {device}: expected auto, cpu or cuda")
    if is_dicomweb(input_dir) or "://" in input_dir:
        from medseg.infer.pacs import check_first

        if part is not None:
            raise MedsegError("--part splits a folder of inputs; a DICOMweb query runs as one job")
        check_first(model, overrides, input_dir, send)
    elif send is not None:
        raise MedsegError("--send stores results in a PACS read with --input dicomweb+http://...")


def _date(text: str | None) -> str | None:
    import datetime

    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise MedsegError(f"--since {text}: expected a date such as 2026-01-31") from None


def _predict_result(summary: dict, manifest: Path) -> str:
    from medseg.infer.batch import summary_line

    return f"{summary_line(summary)}\nmanifest: {manifest}"


@command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `medseg run`")],
    format_: Annotated[
        str, typer.Option("--format", "-f", help="torchscript, onnx or bundle (a MONAI bundle folder)")
    ] = "torchscript",
    out: Annotated[
        Path | None,
        typer.Option(help="model file or bundle folder; default export/model.pt, .onnx, <name>_segmentation"),
    ] = None,
    fold: Annotated[list[int] | None, typer.Option(help="export only this fold (repeatable)")] = None,
    set_: SetOpt = None,
) -> None:
    """Export the fold ensemble (mean softmax) as TorchScript or ONNX with a JSON description, or
    the whole study as a MONAI bundle."""
    from medseg.infer.bundle import bundle_from_run_dir

    if format_ not in ("torchscript", "onnx", "bundle"):
        raise MedsegError(f"--format {format_}: expected one of torchscript, onnx, bundle")
    bundle = bundle_from_run_dir(run_dir, set_, fold)
    if format_ == "bundle":
        from medseg.report.monai_bundle import export_monai_bundle

        folder = export_monai_bundle(bundle, out or run_dir / "export" / f"{bundle.cfg.name}_segmentation")
        typer.echo(
            f"exported: MONAI bundle {folder}; fill in its LICENSE and the authors and copyright "
            "of configs/metadata.json"
        )
        return
    from medseg.infer.export import export_model

    suffix = {"torchscript": ".pt", "onnx": ".onnx"}.get(format_, "")
    path = export_model(bundle, format_, out or run_dir / "export" / f"model{suffix}")
    typer.echo(f"exported: {path} (+ .json, .config.yaml)")


def main() -> None:  # pragma: no cover - console entry for `python -m medseg`
    app(prog_name="medseg")
    sys.exit(0)
