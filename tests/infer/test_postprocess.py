"""Post-processing (MONAI connected components, hole filling) and test-time flips."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medseg.config.models import InferConfig

from ..conftest import tiny_config


def _cfg(tmp_path, **infer):
    return tiny_config(tmp_path, tmp_path / "run", data={"num_classes": 3}, infer=infer)


def test_largest_component_and_hole_filling_per_class(tmp_path):
    from medseg.infer.postprocess import postprocess

    label = np.zeros((20, 20), np.int64)
    label[2:10, 2:10] = 1  # the large class-1 blob, with a hole
    label[5, 5] = 0
    label[15:17, 15:17] = 1  # a small class-1 island
    label[12:18, 2:8] = 2  # class 2: one blob with a hole
    label[14, 4] = 0
    t = torch.from_numpy(label)
    assert torch.equal(postprocess(t, InferConfig(), 3), t)  # both off: unchanged
    out = postprocess(t, InferConfig(largest_component=True), 3).numpy()
    assert out[15:17, 15:17].sum() == 0 and out[2, 2] == 1 and out[5, 5] == 0 and out[14, 4] == 0
    out = postprocess(t, InferConfig(largest_component=True, fill_holes=True), 3).numpy()
    expected = label.copy()
    expected[15:17, 15:17] = 0
    expected[5, 5], expected[14, 4] = 1, 2
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == label.dtype


class Corner(nn.Module):
    """Not flip-equivariant: class 1 grows towards the image origin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ramp = torch.linspace(2, -2, h)[:, None] + torch.linspace(2, -2, w)[None, :]
        return torch.stack([-ramp, ramp])[None].expand(x.shape[0], 2, h, w) * (1 + x[:, :1])


def test_tta_flips_average_every_flip(tmp_path):
    from medseg.infer.sliding import flip_sets, predict_scored
    from medseg.registry import build_inferer

    cfg = tiny_config(tmp_path, tmp_path / "run", infer={"tta_flips": True}, data={"in_channels": 1})
    assert flip_sets(2, True) == [(), (2,), (3,), (2, 3)] and flip_sets(3, False) == [()]
    assert len(flip_sets(3, True)) == 8
    image = torch.rand(1, 32, 32)
    model = Corner()
    got = predict_scored(
        [model], image, cfg.transforms, cfg.infer, build_inferer(cfg.infer, cfg.roi_size), torch.device("cpu")
    )[0]
    expected = sum(
        torch.softmax(model(image[None].flip(d) if d else image[None]), 1).flip(d) if d
        else torch.softmax(model(image[None]), 1)
        for d in flip_sets(2, True)
    ) / 4  # fmt: skip
    torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=0)
    plain_cfg = cfg.model_copy(update={"infer": InferConfig()})
    plain = predict_scored(
        [model],
        image,
        plain_cfg.transforms,
        plain_cfg.infer,
        build_inferer(cfg.infer, cfg.roi_size),
        torch.device("cpu"),
    )[0]
    assert (plain - got).abs().max() > 0.1  # the flips changed something
