"""Training step options: bf16 autocast, channels-last, compile, and their settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medseg.config.load import load_pipeline
from medseg.errors import ConfigError, MedsegError
from medseg.runtime import autocast_dtype, native_bf16
from medseg.train.distributed import DistInfo
from medseg.train.epoch import EpochContext, train_epoch
from medseg.train.losses import training_loss
from medseg.train.state import TrainState, new_state
from medseg.train.step_options import StepOptions, step_options, trained_module
from tests.conftest import tiny_config

CPU = torch.device("cpu")
UNET = {"name": "UNet", "args": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}}


def batch(seed: int = 0, n: int = 4) -> dict[str, torch.Tensor]:
    """A lesion-like batch: a bright disc on noise, its mask the label."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    label = ((yy - 16) ** 2 + (xx - 14) ** 2 < 64).long()[None, None].repeat(n, 1, 1, 1)
    image = torch.randn(n, 3, 32, 32, generator=g) * 0.3 + label.float()
    return {"image": image, "label": label}


def trained(cfg: Any, options: StepOptions, steps: int = 3) -> tuple[TrainState, float]:
    """A network from seed 0 trained ``steps`` steps with ``options``; its state and last loss."""
    torch.manual_seed(0)
    state = new_state(cfg, CPU, options)
    net = trained_module(state.model, options)
    ctx = EpochContext(net, training_loss(cfg), CPU, options, DistInfo(), None, eager=state.model)
    loss = train_epoch(ctx, state, [batch(i) for i in range(steps)], "test", 1)
    return state, loss


def test_bf16_step_has_a_finite_loss_runs_in_bf16_and_updates_the_weights(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, model=UNET, train={"precision": "bf16", "device": "cpu"})
    options = step_options(cfg.train, CPU)
    assert options == StepOptions(torch.bfloat16) and not options.scaled
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in new_state(cfg, CPU, options).model.state_dict().items()}
    state, loss = trained(cfg, options)
    with options.autocast(CPU):
        assert state.model(batch()["image"]).dtype == torch.bfloat16  # the network ran in bf16
    assert torch.isfinite(torch.tensor(loss))
    after = state.model.state_dict()
    assert all(after[k].dtype == torch.float32 for k in after)  # weights stay float32
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    _, fp32_loss = trained(cfg, StepOptions())
    assert loss == pytest.approx(fp32_loss, rel=0.05)  # bf16 trains like float32


def test_channels_last_gives_the_float32_contiguous_outputs_and_steps(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, model=UNET, train={"channels_last": True})
    options = step_options(cfg.train, CPU)
    assert options == StepOptions(None, channels_last=True)
    torch.manual_seed(0)
    plain = new_state(cfg, CPU, StepOptions()).model.eval()
    torch.manual_seed(0)
    last = new_state(cfg, CPU, options).model.eval()
    conv = next(m for m in last.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    x = batch()["image"]
    with torch.no_grad():
        assert torch.allclose(plain(x), last(options.batch(x)), atol=1e-5, rtol=1e-4)
    loss_fn, target = training_loss(cfg), batch()["label"]
    loss_fn(plain.train()(x), target).backward()
    loss_fn(last.train()(options.batch(x)), target).backward()
    for a, b in zip(plain.parameters(), last.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, atol=1e-5 + 1e-3 * float(a.grad.abs().max()))
    _, loss_plain = trained(cfg, StepOptions())
    _, loss_last = trained(cfg, options)
    assert loss_last == pytest.approx(loss_plain, rel=1e-4)


def test_a_compiled_step_trains_as_the_eager_one_and_other_shapes_run_eagerly(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, model=UNET, train={"compile": True})
    options = step_options(cfg.train, CPU)
    state, loss = trained(cfg, options, steps=2)
    _, eager_loss = trained(cfg, StepOptions(), steps=2)
    assert loss == pytest.approx(eager_loss, rel=1e-3)
    torch.manual_seed(0)
    net = trained_module(state.model, options)
    ctx = EpochContext(net, None, CPU, options, DistInfo(), None, eager=state.model)
    full, last = batch()["image"], batch(n=3)["image"]
    assert ctx.network(full) is ctx.net and ctx.network(last) is state.model  # no second compilation
    assert ctx.network(full) is ctx.net


def test_inference_follows_train_precision_with_probabilities_close_to_float32(tmp_path: Path) -> None:
    from medseg.infer.sliding import predict_scored
    from medseg.registry import build_inferer

    fp32 = tiny_config(tmp_path, tmp_path, model=UNET, train={"device": "cpu"})
    bf16 = tiny_config(tmp_path, tmp_path, model=UNET, train={"device": "cpu", "precision": "bf16"})
    state, _ = trained(fp32, StepOptions(), steps=6)
    image = torch.nn.functional.interpolate(batch()["image"][:1], size=(40, 48), mode="bilinear")[0]
    ref, _ = predict_scored(
        [state.model], image, fp32.transforms, fp32.infer, build_inferer(fp32.infer, fp32.roi_size), CPU
    )
    low, _ = predict_scored(
        [state.model], image, bf16.transforms, bf16.infer, build_inferer(bf16.infer, bf16.roi_size), CPU,
        autocast_dtype(bf16.train.precision, bf16.train.amp, CPU),
    )  # fmt: skip
    assert ref.dtype == low.dtype == torch.float32
    assert not torch.equal(ref, low)  # bf16 did run
    assert float((ref - low).abs().max()) < 0.03
    assert float((ref.argmax(0) == low.argmax(0)).float().mean()) > 0.99


def test_precision_resolution_and_native_bf16_detection(tmp_path: Path) -> None:
    zen4, zen3 = tmp_path / "zen4", tmp_path / "zen3"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    zen3.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")
    assert native_bf16(zen4) and not native_bf16(zen3) and not native_bf16(tmp_path / "absent")
    cuda = torch.device("cuda")
    assert autocast_dtype("fp32", True, cuda) == torch.float16  # GPU: train.amp decides, as before
    assert autocast_dtype("bf16", False, cuda) is None
    assert autocast_dtype("fp32", True, CPU) is None  # CPU: train.amp has no effect, as before
    assert autocast_dtype("bf16", False, CPU) == torch.bfloat16
    assert autocast_dtype("auto", True, CPU) == (torch.bfloat16 if native_bf16() else None)
    assert StepOptions(torch.bfloat16, True, True).settings() == {
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
    }
    assert StepOptions(torch.float16).scaled and StepOptions(torch.float16).name == "fp16"


def write_pipeline(tmp_path: Path, train: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\noutput_dir: {tmp_path / 'out'}\ndata:\n  root: {tmp_path}\ntrain:\n{train}")
    return path


def test_step_settings_are_validated_and_default_to_todays_step(tmp_path: Path) -> None:
    cfg = load_pipeline(write_pipeline(tmp_path, "  epochs: 1\n"))
    assert (cfg.train.precision, cfg.train.channels_last, cfg.train.compile) == ("fp32", False, False)
    assert step_options(cfg.train, CPU) == StepOptions()
    every = "  precision: auto\n  channels_last: true\n  compile: true\n"
    cfg = load_pipeline(write_pipeline(tmp_path, every))
    assert (cfg.train.precision, cfg.train.channels_last, cfg.train.compile) == ("auto", True, True)
    with pytest.raises(ConfigError, match="train.precision"):
        load_pipeline(write_pipeline(tmp_path, "  precision: fp16\n"))
    with pytest.raises(ConfigError, match="train.channels_last"):
        load_pipeline(write_pipeline(tmp_path, "  channels_last: maybe\n"))
    with pytest.raises(ConfigError, match="train.compile"):
        load_pipeline(write_pipeline(tmp_path, "  compile: 3\n"))


def test_compile_without_a_cpp_compiler_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(tmp_path, tmp_path, train={"compile": True})
    monkeypatch.setattr("medseg.train.step_options.shutil.which", lambda name: None)
    with pytest.raises(MedsegError, match="train.compile: torch.compile needs a C\\+\\+ compiler"):
        step_options(cfg.train, CPU)
    assert step_options(tiny_config(tmp_path, tmp_path).train, CPU) == StepOptions()
