"""``medseg export RUN_DIR --format bundle``: a finished study as a MONAI bundle folder.

```
<name>_segmentation/
  configs/inference.json        readers, preprocessing, sliding window, fold ensemble, post-processing, writer
  configs/metadata.json         versions, network_data_format, classes, the medseg and MLflow runs
  configs/metadata_schema.json  the specification's mandatory keys, to verify the metadata offline
  models/model.pt               state dict of the fold networks side by side (scripts/fold_stack.py)
  models/model.ts               the same through MONAI's ckpt_export (TorchScript with both configs)
  scripts/fold_stack.py         the network class: torch only
  docs/README.md, docs/figures/ the study's data, folds, cross-validated metrics and figures; commands
  LICENSE                       a placeholder to fill before sharing
```

The design of the configs is in :mod:`medseg.infer.monai_bundle`. The export sits in the report
layer because its README is drawn from the cross-validation report. A step of the study with no
exact MONAI equivalent stops the export before anything is written; the folder is written under
a temporary name and renamed when complete, so no half-written bundle is ever left.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from medseg import __version__
from medseg.errors import MedsegError
from medseg.infer.bundle import ModelBundle
from medseg.infer.monai_bundle import fold_stack, inference, metadata, preprocess
from medseg.io.atomic import write_json, write_text
from medseg.io.case import Case
from medseg.registry import network_args
from medseg.report.bundle_docs import figure_files, readme
from medseg.report.summary import build_summary
from medseg.run_dir import RunDir

LICENSE_TEXT = """No licence has been chosen for this bundle yet.

Replace this file with the licence under which you share the configuration files and the model
weights (the MONAI model zoo uses Apache-2.0), and check that the licence of the training data
allows it (the model zoo puts that in docs/data_license.txt).
"""


def export_monai_bundle(bundle: ModelBundle, out: Path) -> Path:
    """Write the MONAI bundle of a finished run folder.

    Args:
        bundle: the study's configuration and fold checkpoints (``bundle.source`` is the run folder).
        out: the bundle folder; an earlier bundle there is replaced.

    Returns:
        ``out``.

    Raises:
        MedsegError: the run folder lacks what the bundle needs, or a step has no MONAI equivalent.
    """
    cfg, run = bundle.cfg, RunDir(Path(bundle.source))
    if not run.datalist.is_file():
        raise MedsegError(f"{run.root}: no datalist.json; export a run folder written by `medseg run`")
    cases = run.read_cases()
    kind, pre = preprocess.preprocessing(cfg, cases)
    post_choice = _chosen(run)
    folds = sorted(bundle.checkpoints)
    pattern = "*.nii.gz" if kind == "nifti" else _pattern(cases)
    config = inference.inference_config(cfg, pre, kind, len(folds), post_choice, pattern)
    summary = json.loads(run.summary.read_text()) if run.summary.is_file() else build_summary(run.root)
    info = _info(bundle, run, kind, summary, cases)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(tmp, bundle, config, metadata.metadata(cfg, info))
        figures = figure_files(run.root, summary, cfg.transforms.spatial_dims)
        for name, data in figures.items():
            (tmp / "docs" / "figures").mkdir(parents=True, exist_ok=True)
            (tmp / "docs" / "figures" / name).write_bytes(data)
        steps = [_describe(s) for s in config["preprocessing"]["transforms"]] + [_inferer(config)]
        steps += [_describe(s) for s in config["postprocessing"]["transforms"]]
        docs = {"name": out.name, "pattern": pattern, "steps": steps, "figures": sorted(figures), **info}
        write_text(tmp / "docs" / "README.md", readme(cfg, run.root, summary, docs))
        _torchscript(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _write(folder: Path, bundle: ModelBundle, config: dict[str, Any], meta: dict[str, Any]) -> None:
    """configs/, scripts/, models/model.pt and LICENSE."""
    write_json(folder / "configs" / "inference.json", config)
    write_json(folder / "configs" / "metadata.json", meta)
    write_json(folder / "configs" / "metadata_schema.json", metadata.schema())
    write_text(folder / "scripts" / "__init__.py", "")
    write_text(folder / "scripts" / "fold_stack.py", Path(fold_stack.__file__).read_text())
    (folder / "models").mkdir(parents=True, exist_ok=True)
    network = fold_stack.FoldStack(bundle.load(torch.device("cpu")))
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    write_text(folder / "LICENSE", LICENSE_TEXT)


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``scripts.fold_stack`` of ``folder`` importable, as MONAI Label and ``monai.bundle run`` make it."""

    def forget() -> None:
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]

    forget()
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        forget()


def _torchscript(folder: Path) -> None:
    """``models/model.ts`` through MONAI's ``ckpt_export`` (scripted, both configs inside)."""
    import logging
    import warnings

    from monai.bundle import ckpt_export

    quiet = logging.getLogger("monai.bundle.scripts")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its summary of the arguments
    try:
        with _importable(folder), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation notes
            ckpt_export(
                net_id="network_def",
                filepath=str(folder / "models" / "model.ts"),
                ckpt_file=str(folder / "models" / "model.pt"),
                meta_file=str(folder / "configs" / "metadata.json"),
                config_file=str(folder / "configs" / "inference.json"),
                bundle_root=str(folder),
            )
    finally:
        quiet.setLevel(level)


def _chosen(run: RunDir) -> Any:
    """The value ``infer.largest_component: auto`` settled on, from ``postprocessing.json``."""
    return json.loads(run.postprocessing.read_text()).get("value") if run.postprocessing.is_file() else None


def _pattern(cases: list[Case]) -> str:
    """``*.<suffix>`` of the study's pictures (the most common)."""
    suffixes = [s.path.suffix.lower() for c in cases for s in c.images]
    return "*" + max(sorted(set(suffixes)), key=suffixes.count) if suffixes else "*.png"


def _info(
    bundle: ModelBundle, run: RunDir, kind: str, summary: dict[str, Any], cases: list
) -> dict[str, Any]:
    """What metadata.json and the README say of the study and its provenance."""
    cfg = bundle.cfg
    provenance = json.loads(run.provenance.read_text()) if run.provenance.is_file() else {}
    state = run.read_state()
    modalities = cfg.predict.modalities or []
    ct = any(n in i for i in cfg.transforms.preprocess for n in ("ClipZScored", "CTWindowd"))
    metrics = {
        f"{'mean' if name == 'mean' else name}_dice": round(float(stats["dice"]["mean"]), 4)
        for name, stats in summary["fold_mean"].items()
    }
    return {
        "kind": kind,
        "n_folds": len(bundle.checkpoints),
        "in_channels": int(network_args(cfg.network)["in_channels"]),
        "modality": "CT"
        if ct or modalities == ["CT"]
        else (modalities[0] if len(modalities) == 1 else "n/a"),
        "metrics": metrics,
        "data_source": f"{len(cases)} cases of the medseg study '{cfg.name}' "
        f"(data folder '{Path(cfg.data.root).name}')",
        "medseg": {
            "medseg_version": __version__,
            "git_commit": provenance.get("git_commit"),
            "run": run.root.resolve().name,
            "pipeline": cfg.name,
            "config_digest": provenance.get("config_digest"),
            "folds": sorted(bundle.checkpoints),
            "mlflow_run_id": state.get("parent_run_id"),
            "mlflow_fold_run_ids": {k: v.get("run_id") for k, v in sorted(state.get("folds", {}).items())},
        },
    }


def _inferer(config: dict[str, Any]) -> str:
    """The inference step as a README line."""
    i = config["inferer"]
    return (
        f"`SlidingWindowInferer` (roi_size={i['roi_size']}, overlap={i['overlap']}, mode={i['mode']}) over "
        "`FoldStack` (`scripts/fold_stack.py`): the logits of every fold, blended over the windows"
    )


def _describe(step: dict[str, Any]) -> str:
    """One transform of the configs as a README line."""
    args = {k: v for k, v in step.items() if k not in ("_target_", "keys", "_desc_")}
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return (
        f"`{step['_target_']}`"
        + (f" ({text})" if text else "")
        + (f": {step['_desc_']}" if "_desc_" in step else "")
    )
