"""Run folders for prediction tests: trained on synthetic CT, or untrained networks for speed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medseg.config.load import dump_config, load_pipeline

from ..conftest import ROOT, synthetic_ct_overrides

CPU = torch.device("cpu")


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def untrained_run_dir(pipeline: str, overrides: list[str], out: Path, folds: int = 2) -> Path:
    """A run folder as `medseg run` leaves it (config.yaml, finished folds) with seeded random weights."""
    from medseg.io.checkpoint import save_checkpoint
    from medseg.registry import build_network

    cfg = load_pipeline(ROOT / "pipelines" / pipeline, [f"output_dir={out}", *overrides])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    for fold in range(folds):
        torch.manual_seed(fold)
        fold_dir = out / f"fold_{fold}"
        save_checkpoint(
            fold_dir / "checkpoints" / "best.pt", {"model": build_network(cfg.network).state_dict()}
        )
        (fold_dir / "metrics.csv").write_text("case,label\n")
    return out


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) `medseg run` of pipelines/ct.yaml on four synthetic CT cases, 2 folds, MLflow on;
    case ct_000 is a DICOM series."""
    from medseg.pipeline import run

    tmp = tmp_path_factory.mktemp("ct_run")
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", synthetic_ct_overrides(tmp))
    return run(cfg)
