from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.errors import MedsegError
from medseg.io.checkpoint import load_checkpoint, load_weights, save_checkpoint
from medseg.registry import build_network
from medseg.run_dir import FoldDir
from medseg.train.state import make_scheduler
from tests.conftest import tiny_config


def test_cosine_schedule_runs_from_lr_to_eta_min(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, train={"epochs": 10, "optimizer": {"lr": 0.01, "eta_min": 0.0}})
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = make_scheduler(opt, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.005)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_checkpoint_round_trip_and_mismatch_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path)
    net = build_network(cfg.network)
    path = tmp_path / "ck" / "best.pt"
    save_checkpoint(path, {"model": net.state_dict(), "epoch": 3})
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left behind
    other = build_network(cfg.network)
    load_weights(other, path)
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert load_checkpoint(path)["epoch"] == 3
    bigger = tiny_config(
        tmp_path, tmp_path, model={"name": "UNet", "args": {"channels": [8, 16, 32], "strides": [2, 2]}}
    )
    with pytest.raises(MedsegError, match="does not fit the configured network"):
        load_weights(build_network(bigger.network), path)
    with pytest.raises(MedsegError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_nan_images_stop_training_with_a_clear_message(tmp_path: Path) -> None:
    from medseg.train.loop import train_fold

    cfg = tiny_config(tmp_path, tmp_path)
    batch = {
        "image": torch.full((2, 3, 32, 32), float("nan")),
        "label": torch.zeros(2, 1, 32, 32, dtype=torch.long),
    }
    with pytest.raises(MedsegError, match="fold_0 epoch 1: the training loss is nan"):
        train_fold(cfg, [batch], [batch], FoldDir(tmp_path / "fold_0", 0))
    assert not (tmp_path / "fold_0" / "checkpoints" / "best.pt").exists()


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    import errno

    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(MedsegError, match="No space left on device.*previous one is kept"):
        save_checkpoint(path, {"model": {}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_deterministic_training_is_bit_identical_on_the_cpu(tmp_path: Path, synthetic_root: Path) -> None:
    from medseg.data.datalist import build_datalist
    from medseg.runtime import seed_everything
    from medseg.train.loaders import make_loaders
    from medseg.train.loop import train_fold

    cfg = tiny_config(synthetic_root, tmp_path, train={"epochs": 2, "deterministic": True, "device": "cpu"})
    cases, _ = build_datalist(cfg.data)
    weights = []
    for attempt in ("a", "b"):
        seed_everything(7)
        loaders = make_loaders(cfg, cases[:8], cases[8:10], seed=7)
        result = train_fold(cfg, *loaders, FoldDir(tmp_path / attempt, 0))
        weights.append(load_checkpoint(result.last_path)["model"])
    try:
        for a, b in zip(weights[0].values(), weights[1].values(), strict=True):
            assert torch.equal(a, b)
    finally:
        torch.use_deterministic_algorithms(False)
