"""The training loaders: worker counts, the recipe chosen, and the device-cached recipe giving the
same batches as the standard one."""

from __future__ import annotations

import torch

from medseg.data.datalist import build_datalist
from medseg.train import loaders
from medseg.train.loaders import loader_kind, make_loaders, worker_count

from ..conftest import tiny_config

CPU = torch.device("cpu")


def test_worker_count_follows_the_cores_unless_set(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, tmp_path / "run")
    assert cfg.train.num_workers == "auto"
    gpu = torch.device("cuda")
    for cores, expected in ((1, 0), (2, 1), (6, 5), (32, 8)):
        monkeypatch.setattr(loaders, "cores", lambda n=cores: n)
        assert worker_count(cfg, 1000, gpu) == expected
        assert worker_count(cfg, 1000, CPU) == 0  # on a CPU the step's threads take the cores
    # batch 4: 16 cases make 4 steps, enough for one worker; 12 cases (3 steps) for none
    assert worker_count(cfg, 16, gpu) == 1 and worker_count(cfg, 12, gpu) == 0
    assert worker_count(tiny_config(tmp_path, tmp_path / "run", train={"num_workers": 3}), 4) == 3


def test_auto_takes_the_standard_loader_off_cuda(tmp_path):
    assert loader_kind(tiny_config(tmp_path, tmp_path / "run"), CPU, 100) == "standard"
    cfg = tiny_config(tmp_path, tmp_path / "run", train={"loader": "device"})
    assert loader_kind(cfg, CPU, 100) == "device"


def test_the_device_recipe_gives_the_standard_batches(synthetic_root, tmp_path):
    cases, _ = build_datalist(tiny_config(synthetic_root, tmp_path).data, 2, 3)
    fit, val = cases[:8], cases[8:10]
    batches = {}
    for kind in ("standard", "device"):
        cfg = tiny_config(synthetic_root, tmp_path / kind, train={"loader": kind, "num_workers": 0})
        train, early = make_loaders(cfg, fit, val, seed=5, device=CPU)
        assert type(train).__name__ == ("ThreadDataLoader" if kind == "device" else "DataLoader")
        batches[kind] = [(b["image"].as_subclass(torch.Tensor), b["label"].as_subclass(torch.Tensor))
                         for _ in range(2) for b in train]  # fmt: skip
        batches[kind] += [(b["image"].as_subclass(torch.Tensor), b["label"]) for b in early]
    assert len(batches["device"]) == len(batches["standard"]) == 2 * 2 + 1
    for (a_img, a_lab), (b_img, b_lab) in zip(batches["standard"], batches["device"], strict=True):
        torch.testing.assert_close(b_img, a_img)  # the same random draws, applied to plain tensors
        assert torch.equal(torch.as_tensor(b_lab), torch.as_tensor(a_lab)) and b_lab.dtype == torch.int64
