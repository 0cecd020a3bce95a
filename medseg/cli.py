"""The ``medseg`` command. Parsing only: heavy modules (torch, MONAI, MLflow) load inside commands."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

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


def _setup() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow", "urllib3", "PIL", "matplotlib", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MONAI logs this on every LoadImage once pydicom is imported; the pydicom decoders still work.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*NvImgCodecPydicomReader.*")
    warnings.filterwarnings("ignore", message=".*get_mask_edges.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*labels.*", category=FutureWarning)


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=1)


@app.command()
def run(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    fold: Annotated[
        list[int] | None, typer.Option(help="run only this fold (repeatable): folds as separate jobs")
    ] = None,
) -> None:
    """Run a whole study: ingest, cross-validated training, inference, evaluation, report.

    Started again with the same command, a killed run resumes from its last checkpoints."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.config import load_pipeline
        from medseg.pipeline import run as run_pipeline

        overrides = list(set_ or []) + ([f"split.folds={list(fold)}"] if fold else [])
        cfg = load_pipeline(pipeline, overrides)
        run_dir = run_pipeline(cfg)
    except MedsegError as err:
        _fail(err)
    except RuntimeError as err:  # a MedsegError raised inside a MONAI transform arrives wrapped
        from medseg.errors import medseg_cause

        cause = medseg_cause(err)
        if cause is None:
            raise
        _fail(cause)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished folds and their files are kept", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")


@app.command()
def validate(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    show: Annotated[
        bool, typer.Option("--show", help="print the resolved config, every default included")
    ] = False,
) -> None:
    """Check a pipeline file (keys, values, component arguments) without running it."""
    _setup()
    from medseg.config import dump_config, load_pipeline
    from medseg.errors import MedsegError

    try:
        cfg = load_pipeline(pipeline, set_)
    except MedsegError as err:
        _fail(err)
    typer.echo(dump_config(cfg) if show else f"{pipeline}: valid")


@app.command()
def preview(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG path; default <output_dir>/preview.png")
    ] = None,
) -> None:
    """Write a grid of training cases after the training transforms, mask outlines drawn."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.config import load_pipeline
        from medseg.pipeline import ingest
        from medseg.preview import preview_grid

        cfg = load_pipeline(pipeline, set_)
        run_dir = Path(cfg.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cases, _ = ingest(cfg, run_dir)
        path = preview_grid(cfg, cases, output or run_dir / "preview.png")
    except MedsegError as err:
        _fail(err)
    typer.echo(f"preview: {path}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder written by `medseg run`")]) -> None:
    """Rebuild report.html, report.md and summary.json of a run folder."""
    from medseg.errors import MedsegError

    try:
        from medseg.evaluate.report import write_report

        write_report(run_dir)
    except MedsegError as err:
        _fail(err)
    typer.echo(f"report: {run_dir / 'report.html'}")


def _numbers(text: str | None, what: str, kind: type = float) -> list | None:
    if text is None:
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        _fail(ValueError(f"{what}: expected comma-separated numbers, got '{text}'"))
    return None


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="folder of predicted masks")],
    ref: Annotated[Path, typer.Option("--ref", help="folder of reference masks")],
    out: Annotated[Path, typer.Option("--out", help="where metrics.csv and summary.json go")] = Path(
        "evaluation"
    ),
    spacing: Annotated[
        str | None, typer.Option(help="voxel spacing in mm, e.g. 0.8,0.8,2.0 (default: from the files)")
    ] = None,
    labels: Annotated[str | None, typer.Option(help="labels to score, e.g. 1,2 (default: all found)")] = None,
    tolerance: Annotated[
        str, typer.Option(help="Surface Dice tolerance(s) in mm, one or one per label")
    ] = "2.0",
    pred_suffix: Annotated[str, typer.Option(help="dropped from prediction names before pairing")] = "",
    ref_suffix: Annotated[str, typer.Option(help="dropped from reference names, e.g. _segmentation")] = "",
) -> None:
    """Score a folder of predictions against a folder of references (PNG, NIfTI, DICOM, DICOM SEG)."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.evaluate.folders import evaluate_folders

        summary = evaluate_folders(
            pred,
            ref,
            out,
            spacing=_numbers(spacing, "--spacing"),
            labels=_numbers(labels, "--labels", int),
            tolerance=_numbers(tolerance, "--tolerance") or [2.0],
            pred_suffix=pred_suffix,
            ref_suffix=ref_suffix,
        )
    except MedsegError as err:
        _fail(err)
    for key, stats in summary["labels"].items():
        hd = stats["hd95"]
        typer.echo(
            f"{key}: Dice {stats['dice']['mean']:.4f} ± {stats['dice']['std']:.4f}, "
            f"HD95 {hd['mean']:.3f} ({hd['n_infinite']} infinite, "
            f"capped mean {hd.get('capped_mean', float('nan')):.3f}), "
            f"NSD {stats['nsd']['mean']:.4f} over {stats['counts']['n']} cases"
        )
    typer.echo(f"metrics: {out / 'metrics.csv'}, summary: {out / 'summary.json'}")


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path] | None, typer.Argument(help="run folders (each compared by its latest pipeline run)")
    ] = None,
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (sqlite:///..., http://...)")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help="experiment name (repeatable)")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", help="pipeline run id (repeatable)")] = None,
    metric: Annotated[str, typer.Option(help="held-out metric, e.g. dice, hd95, dice_label_2")] = "dice",
    out: Annotated[Path, typer.Option(help="where comparison.csv/.md/.png go")] = Path("comparison"),
) -> None:
    """Rank MLflow pipeline runs on a metric (mean ± std over folds) and show differing settings."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.compare import collect_runs, write_comparison

        runs = collect_runs(uri, experiment or [], run or [], run_dirs or [], f"test_{metric}")
        paths = write_comparison(runs, metric, out)
    except MedsegError as err:
        _fail(err)
    typer.echo(paths["md"].read_text())
    typer.echo(f"written: {paths['csv']}, {paths['md']}, {paths['png']}")


def _device(setting: str | None, cfg_setting: str) -> object:
    from medseg.train.loop import pick_device

    return pick_device(setting or cfg_setting)


@app.command()
def predict(
    model: Annotated[
        str, typer.Option("--model", "-m", help="run folder, runs:/<id> or models:/<name>/<version>")
    ],
    input_dir: Annotated[Path, typer.Option("--input", "-i", help="folder tree of DICOM, NIfTI or PNG/JPEG")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where predictions and manifest.csv go")],
    set_: SetOpt = None,
    fold: Annotated[list[int] | None, typer.Option(help="use only this fold's model (repeatable)")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow store of a runs:/ model, e.g. sqlite:///runs/ct/mlflow.db")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: train.device)")] = None,
) -> None:
    """Segment every selected series or image under a folder with the ensemble of a study's folds.

    Writes <key>.nii.gz (or .png) on the input's own grid, a DICOM SEG for DICOM inputs, overlays
    for 2D inputs, manifest.csv and summary.json. Run again, it skips what is done."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.infer.batch import predict_folder, summary_line
        from medseg.infer.bundle import load_bundle

        if device not in (None, "auto", "cpu", "cuda"):
            raise MedsegError(f"--device {device}: expected auto, cpu or cuda")
        bundle = load_bundle(model, set_, fold, tracking_uri, output / ".model")
        summary = predict_folder(bundle, input_dir, output, _device(device, bundle.cfg.train.device))  # type: ignore[arg-type]
    except MedsegError as err:
        _fail(err)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished inputs are in manifest.csv; run again to go on", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(summary_line(summary))
    typer.echo(f"manifest: {output / 'manifest.csv'}")
    if summary["failed"]:
        raise typer.Exit(code=2)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `medseg run`")],
    format_: Annotated[str, typer.Option("--format", "-f", help="torchscript or onnx")] = "torchscript",
    out: Annotated[
        Path | None, typer.Option(help="model file; default <run_dir>/export/model.pt or .onnx")
    ] = None,
    fold: Annotated[list[int] | None, typer.Option(help="export only this fold (repeatable)")] = None,
) -> None:
    """Export the fold ensemble (mean softmax) as TorchScript or ONNX, with a JSON description."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.infer.bundle import bundle_from_run_dir
        from medseg.infer.export import export_model

        suffix = {"torchscript": ".pt", "onnx": ".onnx"}.get(format_, "")
        target = out or run_dir / "export" / f"model{suffix}"
        path = export_model(bundle_from_run_dir(run_dir, None, fold), format_, target)
    except MedsegError as err:
        _fail(err)
    typer.echo(f"exported: {path} (+ .json, .config.yaml)")


def main() -> None:  # pragma: no cover - console entry for `python -m medseg`
    app(prog_name="medseg")
    sys.exit(0)
