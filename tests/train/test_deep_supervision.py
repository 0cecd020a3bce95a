"""Deep supervision: a DynUNet's decoder levels each feed the loss, weights halving (nnU-Net)."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.registry import build_network
from medseg.train.losses import build_loss, training_loss

from ..conftest import make_dataset, tiny_config

DS_MODEL = {
    "name": "DynUNet",
    "args": {
        "kernel_size": [3, 3, 3],
        "strides": [1, 2, 2],
        "upsample_kernel_size": [2, 2],
        "filters": [4, 8, 16],
        "deep_supervision": True,
        "deep_supr_num": 1,
    },
}


def test_the_loss_is_the_weighted_sum_over_the_outputs(tmp_path):
    cfg = tiny_config(make_dataset(tmp_path / "d", n_cases=4), tmp_path / "run", model=DS_MODEL)
    torch.manual_seed(0)
    net = build_network(cfg.network).train()
    out = net(torch.randn(2, 3, 32, 32))
    assert tuple(out.shape) == (2, 2, 2, 32, 32)  # (batch, full + 1 deep output, classes, H, W)
    target = torch.randint(0, 2, (2, 1, 32, 32))
    outputs = list(torch.unbind(out, 1))
    plain = build_loss(cfg.train.loss, None)
    expected = plain(outputs[0], target) + 0.5 * plain(outputs[1], target)
    assert torch.allclose(training_loss(cfg)(outputs, target), expected)
    assert tuple(net.eval()(torch.randn(1, 3, 32, 32)).shape) == (1, 2, 32, 32)  # inference: one output


def test_a_deep_supervised_fold_trains(tmp_path):
    from medseg.pipeline import run

    cfg = tiny_config(
        make_dataset(tmp_path / "d", n_cases=12),
        tmp_path / "run",
        model=DS_MODEL,
        tracking={"enabled": False},
    )
    out = run(cfg)
    assert (out / "fold_1" / "metrics.csv").is_file()


def test_deep_supervision_of_other_networks_is_refused(tmp_path):
    model = {"name": "UNet", "args": {"channels": [4, 8], "strides": [2], "deep_supervision": True}}
    with pytest.raises(ConfigError, match="only DynUNet's is supported"):
        build_network(tiny_config(tmp_path, tmp_path / "run", model=model).network)
