from __future__ import annotations

import pytest
import torch

from medseg.registry import NETWORK_DEFAULTS, build_network
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", sorted(NETWORK_DEFAULTS))
def test_every_registered_network_builds_and_keeps_the_image_size(name: str, tmp_path) -> None:
    args = {"features": [4, 4, 8, 16, 32, 4]} if name == "BasicUNet" else {}
    if name == "SegResNet":
        args = {"init_filters": 8}
    cfg = tiny_config(
        tmp_path, tmp_path, model={"name": name, "args": args}, transforms={"spatial_size": [64, 64]}
    )
    net = build_network(cfg.network).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 2, 64, 64)
