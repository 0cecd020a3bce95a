"""Shared fixtures: a small synthetic data set in the ISIC layout and tiny pipeline configs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medseg.config.load import deep_merge, validate_dict
from medseg.config.models import DataConfig, PipelineConfig, SyntheticConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

warnings.filterwarnings("ignore", message=".*NvImgCodecPydicomReader.*")
DCIODVFY = shutil.which("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy (Debian dicom3tools) prints for ``path``; warnings are not errors."""
    proc = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(autouse=True)
def every_seg_passes_dciodvfy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every DICOM SEG a test writes in its own process is checked by dciodvfy after the test;
    an error fails it. Nothing is checked where dciodvfy is not installed."""
    if DCIODVFY is None:
        yield
        return
    from medseg.io import dicom_seg

    written: list[Path] = []
    real = dicom_seg._save_seg

    def recording(*args: Any, **kwargs: Any) -> Path:
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(dicom_seg, "_save_seg", recording)
    yield
    problems = {str(p): errors for p in written if p.is_file() and (errors := dciodvfy_errors(p))}
    assert not problems, f"dciodvfy finds errors in the DICOM SEG written: {problems}"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C raises KeyboardInterrupt in the tests and in every process they start, however the
    suite was launched: a shell starting ``make test &`` without job control (``nohup``, CI
    wrappers) ignores SIGINT, the ignoring is inherited across exec, and Python then never turns
    SIGINT into KeyboardInterrupt, so the Ctrl-C tests would test nothing."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run where a CUDA device is visible and are skipped, saying so, elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def fixed_step_times(per_voxel: float, fixed: float = 0.0) -> Any:
    """A stand-in for ``medseg.plan.calibrate.measure`` where a test checks the planner's rules, not
    the device: a step takes ``fixed`` + ``per_voxel`` x its voxels (patch or picture x batch), a
    validation case 0.01 s, loading a case 0.002 s, 200 MB at the peak. The calibration itself is
    tested in tests/plan/test_calibrate.py."""

    def measure(cfg: PipelineConfig, cases: Any, **options: Any) -> Any:
        import numpy as np

        from medseg.plan import calibrate

        size = cfg.transforms.patch_size or cfg.transforms.spatial_size or []
        voxels = float(np.prod(size)) * cfg.train.batch_size
        return calibrate.Measured(fixed + per_voxel * voxels, 0.01, 0.002, 200 * 2**20)

    return measure


def make_dataset(root: Path, n_cases: int = 12, seed: int = 0, height: int = 48, width: int = 64) -> Path:
    from medseg.data.synthetic import generate_dataset

    spec = SyntheticConfig(n_cases=n_cases, height=height, width=width, seed=seed)
    generate_dataset(DataConfig(root=root), spec)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve synthetic cases, 48x64, written once per test session (treat as read-only)."""
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


# settings for very small 3D runs of pipelines/ct.yaml, as --set overrides
TINY_3D = [
    "model.args.channels=[4, 8, 16]",
    "model.args.strides=[2, 2]",
    "model.args.num_res_units=1",
    "train.epochs=1",
    "train.batch_size=2",
    "transforms.patches_per_image=2",
    "evaluate.n_worst=1",
    "preview.n_cases=1",
    "preview.n_draws=1",
]


def synthetic_ct_overrides(tmp: Path) -> list[str]:
    """pipelines/ct.yaml on four small synthetic CT cases (case ct_000 a DICOM series), tiny 3D UNet."""
    return [
        f"output_dir={tmp / 'run'}",
        f"data.root={tmp / 'data'}",
        "data.cases=null",
        "data.synthetic={kind: ct, n_cases: 4, height: 32, width: 36, depth: 12}",
        "data.num_classes=3",
        "data.labels={liver: 5, spleen: 1}",
        "evaluate.nsd_tolerance=[2.0, 3.0]",
        "transforms.spacing=[3.0, 3.0, 3.0]",
        "transforms.patch_size=[16, 16, 8]",
        *TINY_3D,
    ]


def tiny_config(root: Path, out: Path, **overrides: Any) -> PipelineConfig:
    """A validated and bound config that trains a very small UNet for one epoch on ``root``."""
    from medseg.config.load import bind_components

    raw: dict[str, Any] = {
        "name": "tiny",
        "output_dir": str(out),
        "data": {"root": str(root)},
        "split": {"n_folds": 2},
        "transforms": {"spatial_size": [32, 32]},
        "model": {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}},
        "train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.2},
        "evaluate": {"n_worst": 2},
        "preview": {"n_cases": 2, "n_draws": 2},
    }
    if "model" in overrides:  # a different network: replace its arguments rather than merge them
        raw["model"] = overrides.pop("model")
    return bind_components(validate_dict(deep_merge(raw, overrides)))


@pytest.fixture
def ph2_root() -> Path:
    root = SHARED_DATA / "ph2-isic-layout"
    if not root.is_dir():
        pytest.skip(f"real PH2 data not present at {root}")
    return root


def study_runs(run_dir: Path) -> tuple[Any, list[Any]]:
    """The MLflow client of the store a run folder's study logged to, and that study's runs: every
    pipeline run of the folder and their fold runs (a project store holds other studies too)."""
    from mlflow.tracking import MlflowClient

    from medseg.tracking.store import folder_store

    client = MlflowClient(tracking_uri=folder_store(run_dir).uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    here = Path(run_dir).resolve()
    parents = {
        r.info.run_id
        for r in runs
        if r.data.tags.get("medseg.kind") == "pipeline"
        and Path(r.data.params.get("output_dir", "")).resolve() == here
    }
    ours = [r for r in runs if r.info.run_id in parents or r.data.tags.get("mlflow.parentRunId") in parents]
    return client, ours
