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
    for noisy in ("alembic", "mlflow", "urllib3", "PIL", "matplotlib"):
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
def run(pipeline: PipelineArg, set_: SetOpt = None) -> None:
    """Run a whole study: ingest, cross-validated training, inference, evaluation, report."""
    _setup()
    from medseg.errors import MedsegError

    try:
        from medseg.config import load_pipeline
        from medseg.pipeline import run as run_pipeline

        cfg = load_pipeline(pipeline, set_)
        run_dir = run_pipeline(cfg)
    except MedsegError as err:
        _fail(err)
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


def main() -> None:  # pragma: no cover - console entry for `python -m medseg`
    app(prog_name="medseg")
    sys.exit(0)
