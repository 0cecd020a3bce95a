"""``docs/README.md`` of a study's MONAI bundle: the data, the folds, the cross-validated metrics
with the report's figures, what the bundle does to an input, and the commands that use it.

Everything is read back from the run folder, as the report is (:mod:`medseg.report.summary`); the
figures are the report's own (:mod:`medseg.report.figures`), written as PNG files beside the page.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from medseg.config.models import PipelineConfig
from medseg.report import figures
from medseg.report.pages import metric_table, table_names
from medseg.report.summary import fold_rows
from medseg.run_dir import RunDir

FIGURES = {
    "boxplots.png": "Per-class Dice, Surface Dice and HD95 of every held-out case, by fold",
    "volumes.png": "Dice against reference volume, and predicted against reference volume",
    "learning_curves.png": "Training loss and validation Dice per epoch, best epoch marked",
}


def figure_files(run_dir: Path, summary: dict[str, Any], spatial_dims: int) -> dict[str, bytes]:
    """The report's figures as PNG bytes by file name; a figure that cannot be drawn is left out."""
    run = RunDir(run_dir)
    rows_by_fold = fold_rows(run.root)
    rows = [r for fold in rows_by_fold.values() for r in fold]
    unit = summary.get("distance_unit", "mm")
    drawn = {
        "boxplots.png": figures.boxplots(rows_by_fold, unit),
        "volumes.png": figures.volume_plots(rows, unit, spatial_dims),
        "learning_curves.png": figures.learning_curves(run.scored_folds()),
    }
    return {name: base64.b64decode(fig.png) for name, fig in drawn.items() if fig.png}


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def data_section(cfg: PipelineConfig, run_dir: Path, summary: dict[str, Any]) -> str:
    """Cases, classes and folds of the study."""
    run = RunDir(run_dir)
    splits = json.loads(run.splits.read_text()) if run.splits.is_file() else []
    classes = ", ".join(f"{k} = {v}" for k, v in {0: "background", **cfg.class_names}.items())
    folds = "\n".join(
        f"| {k} | {len(s.get('train', []))} | {len(s.get('val', []))} |" for k, s in enumerate(splits)
    )
    bad = len(summary.get("bad_cases", []))
    return (
        f"## Data and folds\n\n{summary.get('n_cases', '?')} cases of the study `{cfg.name}` "
        f"(data folder `{Path(cfg.data.root).name}`, layout `{cfg.data.layout}`), {bad} skipped at ingest. "
        f"Classes: {classes}.\n\n{cfg.split.n_folds}-fold cross-validation "
        f"(seed {cfg.split.seed}, grouped by "
        f"`{cfg.split.group_by}`, stratified by `{cfg.split.stratify_by}`):\n\n"
        f"| fold | training cases | held-out cases |\n|---|---|---|\n{folds}\n"
    )


def metrics_section(summary: dict[str, Any], shown: list[str]) -> str:
    """The report's tables and figures."""
    tables = "\n\n".join(
        f"### {'mean over classes' if n == 'mean' else n}\n\n{_table(metric_table(summary, n))}"
        for n in table_names(summary)
    )
    pictures = "\n\n".join(f"![{FIGURES[name]}](figures/{name})\n\n*{FIGURES[name]}.*" for name in shown)
    pp = summary.get("postprocessing")
    chosen = f"\n\nPost-processing chosen from cross-validation: {pp['reason']}." if pp else ""
    return (
        "## Cross-validated results\n\nEach held-out case predicted by the model of its fold, on the grid "
        f"of its reference (mean ± std over cases).{chosen}\n\n{tables}\n\n{pictures}\n"
    )


def conditions_section(kind: str, spacing: list[float] | None) -> str:
    """Which inputs the bundle segments exactly as ``medseg predict`` does."""
    reading = (
        "NIfTI volumes (convert DICOM series to NIfTI first, or use MONAI Deploy's DICOM loader: "
        "MONAI's own DICOM reader orders slices by InstanceNumber, which medseg never trusts)"
        if kind == "nifti"
        else "8-bit RGB or grey pictures like the study's (convert RGBA and palette pictures to RGB first)"
    )
    grid = (
        f"; resampling to {spacing} mm samples medseg's points when size x spacing / target is a whole "
        "number on every axis, as for every case of the study (otherwise MONAI keeps the spacing exact "
        "where medseg keeps the field of view, up to half a voxel apart at the far edge)"
        if spacing
        else ""
    )
    head = "## Where it equals `medseg predict`"
    return f"{head}\n\nLabel maps equal medseg's, voxel for voxel, for {reading}{grid}.\n"


def usage_section(name: str, pattern: str) -> str:
    """The commands a user types: run, verify, export, MONAI Label and MONAI Deploy."""
    return f"""## Running the bundle

Needs MONAI with `pip install "monai[fire,ignite,jsonschema,nibabel,pillow]"`; run from this folder,
so that `scripts/` (the fold networks side by side, torch only) can be imported:

```bash
python -m monai.bundle run --config_file configs/inference.json \\
    --dataset_dir /path/to/inputs --file_pattern '{pattern}' --output_dir /path/to/outputs
python -m monai.bundle verify_metadata --meta_file configs/metadata.json \\
    --filepath configs/metadata_schema.json
python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
    --config_file configs/inference.json
python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\
    --meta_file configs/metadata.json --config_file configs/inference.json
```

Each input `x` gives `x_seg` in `--output_dir` (`--output_postfix` changes the suffix).
Several files per case (one per channel): give `--datalist "[['a_0000.nii.gz', 'a_0001.nii.gz']]"`.

## Into MONAI Label and MONAI Deploy

```bash
monailabel apps --download --name monaibundle --output apps
cp -r {name} apps/monaibundle/model/
monailabel start_server --app apps/monaibundle --studies /path/to/images \\
    --conf models {name} --conf skip_trainers true
```

MONAI Deploy: an application with `MonaiBundleInferenceOperator` (the App SDK's
`examples/apps/ai_spleen_seg_app` is one: DICOM series in, DICOM SEG out; set its segment
descriptions to this bundle's classes) runs `models/model.ts`, which holds `metadata.json` and
`inference.json`; its image goes in as `image` and the label map comes out as `pred`:

```bash
pip install monai-deploy-app-sdk
export HOLOSCAN_INPUT_PATH=/path/to/dicom HOLOSCAN_OUTPUT_PATH=output
export HOLOSCAN_MODEL_PATH={name}/models/model.ts
python my_app/app.py
monai-deploy package my_app --config my_app/app.yaml --tag {name}:0.1.0 \\
    --models {name}/models/model.ts --platform x86_64
```
"""


def readme(cfg: PipelineConfig, run_dir: Path, summary: dict[str, Any], info: dict[str, Any]) -> str:
    """The whole ``docs/README.md``.

    Args:
        cfg: the study's configuration.
        run_dir: the run folder.
        summary: the run's ``summary.json``.
        info: ``name`` (the bundle folder), ``pattern``, ``steps`` (what the bundle does, as lines),
            ``figures`` (file names written), ``medseg`` (provenance).
    """
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(info["steps"], 1))
    prov = "\n".join(f"- {k}: {v}" for k, v in info["medseg"].items())
    return (
        f"# {cfg.name} segmentation: a MONAI bundle exported by medseg\n\n"
        f"{', '.join(cfg.class_names.values())} segmented in {cfg.transforms.spatial_dims}D by the "
        f"{len(info['medseg']['folds'])}-fold ensemble of the medseg study `{cfg.name}`.\n\n"
        "**Before sharing**, fill in `LICENSE`, and `authors` and `copyright` in `configs/metadata.json`.\n\n"
        f"{data_section(cfg, run_dir, summary)}\n{metrics_section(summary, info['figures'])}\n"
        f"## What the bundle does to an input\n\n{steps}\n\n"
        f"{conditions_section(info['kind'], cfg.transforms.spacing)}\n"
        f"{usage_section(info['name'], info['pattern'])}\n"
        f"## Provenance\n\n{prov}\n"
    )
