"""Training on a CUDA device: mixed precision and the device-cached loader (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from medseg.data.datalist import build_datalist
from medseg.train.distributed import DistInfo
from medseg.train.epoch import EpochContext, train_epoch
from medseg.train.loaders import loader_kind, make_loaders
from medseg.train.losses import training_loss
from medseg.train.state import new_state

from ..conftest import tiny_config

pytestmark = pytest.mark.cuda
CPU, GPU = torch.device("cpu"), torch.device("cuda")
AUGMENT = [
    {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
    {"RandAffined": {"prob": 0.5, "rotate_range": 0.3, "scale_range": 0.1, "padding_mode": "zeros"}},
    {"RandScaleIntensityd": {"prob": 0.5, "factors": 0.1}},
]


def _config(root, out, **train):
    return tiny_config(root, out, transforms={"train": AUGMENT}, train={"device": "cuda", **train})


def _first_conv_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """The output dtypes of the network's first convolution, recorded at every forward pass."""
    seen: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_amp_computes_in_half_precision_and_agrees_with_float32(synthetic_root, tmp_path):
    """With AMP the convolutions run in float16 under a grad scaler while the weights stay float32;
    the first loss matches a float32 step from the same weights, and an epoch trains."""
    cfg = _config(synthetic_root, tmp_path / "run", loader="standard", num_workers=0)
    cases, _ = build_datalist(cfg.data, 2, 3)
    loader, _ = make_loaders(cfg, cases[:8], [], seed=0, device=GPU)
    batch = next(iter(loader))
    image, label = batch["image"].to(GPU), batch["label"].to(GPU)
    losses = {}
    for amp in (False, True):
        torch.manual_seed(0)
        state = new_state(cfg, GPU, amp)
        dtypes = _first_conv_dtypes(state.model)
        with torch.no_grad(), torch.autocast("cuda", enabled=amp):
            losses[amp] = float(training_loss(cfg).to(GPU)(state.model(image), label))
        assert dtypes == [torch.float16 if amp else torch.float32]
        assert state.scaler.is_enabled() is amp
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)

    before = [p.detach().clone() for p in state.model.parameters()]
    ctx = EpochContext(state.model, training_loss(cfg).to(GPU), GPU, True, DistInfo(), None)
    mean_loss = train_epoch(ctx, state, loader, "amp test", 1)
    assert torch.isfinite(torch.tensor(mean_loss)) and mean_loss > 0
    assert state.scaler.get_scale() > 0
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in state.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, state.model.parameters(), strict=True))


def test_the_device_loader_caches_on_the_gpu_and_gives_the_standard_batches(synthetic_root, tmp_path):
    """`train.loader: device` caches the model grid on the GPU and augments there, drawing the same
    random transforms as the standard loader on the CPU; `auto` takes it for a small 2D study."""
    cases, _ = build_datalist(_config(synthetic_root, tmp_path).data, 2, 3)
    fit, val = cases[:8], cases[8:10]
    assert loader_kind(_config(synthetic_root, tmp_path), GPU, len(cases)) == "device"
    batches = {}
    for kind, device in (("standard", CPU), ("device", GPU)):
        cfg = _config(synthetic_root, tmp_path / kind, loader=kind, num_workers=0)
        train, early = make_loaders(cfg, fit, val, seed=5, device=device)
        assert type(train).__name__ == ("ThreadDataLoader" if kind == "device" else "DataLoader")
        if kind == "device":
            cached = train.dataset._cache[0]["image"]  # the deterministic part, cached on the GPU
            assert cached.device.type == "cuda"
        batches[kind] = [(b["image"], b["label"]) for _ in range(2) for b in train]
        batches[kind] += [(b["image"], b["label"]) for b in early]
    assert len(batches["device"]) == len(batches["standard"]) == 2 * 2 + 1
    for (a_img, a_lab), (b_img, b_lab) in zip(batches["standard"], batches["device"], strict=True):
        assert b_img.device.type == "cuda" and b_lab.device.type == "cuda"
        b_img, b_lab = (x.cpu().as_subclass(torch.Tensor) for x in (b_img, b_lab))
        a_img, a_lab = (x.as_subclass(torch.Tensor) for x in (a_img, a_lab))
        torch.testing.assert_close(b_img, a_img, atol=1e-3, rtol=1e-3)  # the GPU's own rounding
        # a label is resampled nearest-neighbour: identical but for pixels on a rounding edge
        same = (b_lab == a_lab).float().mean()
        assert same > 0.999 and b_lab.dtype == torch.int64
