"""`medseg predict` on a CUDA device: the CPU's probabilities and labels, with and without AMP
(skipped without CUDA)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.config.models import DataConfig, SyntheticConfig
from medseg.data.synthetic_ct import generate_ct_dataset
from medseg.infer.batch import predict_folder
from medseg.tracking.models import load_bundle

from ..conftest import TINY_3D
from .conftest import CPU, manifest, untrained_run_dir

pytestmark = pytest.mark.cuda
GPU = torch.device("cuda")
STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"


@pytest.fixture(scope="module")
def ct_inputs(tmp_path_factory):
    """A synthetic DICOM series and a NIfTI volume, as `medseg predict` finds them in a folder."""
    tmp = tmp_path_factory.mktemp("ct_cuda")
    data = generate_ct_dataset(
        DataConfig(root=tmp / "data", layout="table"),
        SyntheticConfig(kind="ct", n_cases=4, height=40, width=48, depth=16),
    )
    inputs = tmp / "in"
    shutil.copytree(data / "dicom" / "ct_000", inputs / "ct_000")
    shutil.copy(data / "imagesTr" / "ct_001.nii.gz", inputs / "ct_001.nii.gz")
    return inputs


def _predict(ct_inputs, tmp_path, device, amp):
    overrides = [
        *TINY_3D,
        STATS,
        "transforms.spacing=[3.0, 3.0, 3.0]",
        "transforms.patch_size=[16, 16, 8]",
        "predict.write_probabilities=true",
        f"train.amp={str(amp).lower()}",
    ]
    run_dir = untrained_run_dir("ct.yaml", overrides, tmp_path / f"run_{amp}", folds=2)
    out = tmp_path / f"out_{device.type}_{amp}"
    summary = predict_folder(load_bundle(str(run_dir)), ct_inputs, out, device)
    assert (summary["done"], summary["failed"]) == (2, 0) and summary["device"] == str(device)
    rows = {r["key"]: r for r in manifest(out)}
    return {
        key: (
            np.asarray(nib.load(out / row["mask"]).dataobj),
            np.asarray(nib.load(out / f"{key}_probabilities.nii.gz").dataobj),
        )
        for key, row in rows.items()
    }


@pytest.mark.parametrize("amp", [False, True])
def test_predict_on_the_gpu_gives_the_cpu_probabilities_and_labels(ct_inputs, tmp_path, amp):
    """Both inputs (a DICOM series, a NIfTI volume) through every stage on the GPU: the mean
    softmax within 1e-4 of the CPU's in float32 and 1e-2 with AMP (float16), and the same label
    wherever the CPU's two most likely classes are further apart than that."""
    torch.cuda.reset_peak_memory_stats()
    on_cpu = _predict(ct_inputs, tmp_path, CPU, False)
    on_gpu = _predict(ct_inputs, tmp_path, GPU, amp)
    assert torch.cuda.max_memory_allocated() > 0  # the models ran on the device
    tolerance = 1e-2 if amp else 1e-4
    assert on_gpu.keys() == on_cpu.keys() and len(on_cpu) == 2
    for key, (labels, probs) in on_cpu.items():
        gpu_labels, gpu_probs = on_gpu[key]
        assert gpu_labels.shape == labels.shape and gpu_probs.shape == probs.shape
        np.testing.assert_allclose(gpu_probs, probs, atol=tolerance)
        top2 = np.sort(probs, axis=-1)[..., -2:]
        tied = (top2[..., 1] - top2[..., 0]) <= 2 * tolerance  # where the two may rightly differ
        assert tied.mean() < 0.5, "the CPU's predictions are mostly ties; the comparison says nothing"
        # the labels are on the input's grid, the probabilities on the canonical one: compare counts
        assert (gpu_labels != labels).mean() <= tied.mean() + 1e-3
