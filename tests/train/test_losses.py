from __future__ import annotations

import pytest
import torch

from medseg.config.models import ComponentConfig
from medseg.train.losses import build_loss

LOSSES = ["DiceCE", "DiceFocal", "Dice", "Tversky", "Focal"]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.6).long()
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_do_not_change_the_loss_or_get_gradient(name: str) -> None:
    logits, target = _batch()
    target[:, :, :5, :] = 255
    loss_fn = build_loss(ComponentConfig(name=name), ignore_value=255)
    a = logits.clone().requires_grad_(True)
    loss_a = loss_fn(a, target)
    loss_a.backward()
    assert a.grad is not None
    assert torch.all(a.grad[:, :, :5, :] == 0)
    assert a.grad[:, :, 5:, :].abs().sum() > 0
    b = logits.clone()
    b[:, :, :5, :] = torch.randn(2, 2, 5, 16) * 10
    assert torch.allclose(loss_a.detach(), loss_fn(b, target), atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_ignore_aware_loss_equals_monai_when_nothing_is_ignored(name: str) -> None:
    logits, target = _batch(1)
    with_ignore = build_loss(ComponentConfig(name=name), ignore_value=255)(logits, target)
    plain = build_loss(ComponentConfig(name=name), ignore_value=None)(logits, target)
    assert torch.allclose(with_ignore, plain, atol=1e-5), (with_ignore, plain)


def test_plain_loss_is_monai_class() -> None:
    from monai.losses import DiceCELoss

    loss = build_loss(ComponentConfig(name="DiceCE", args={"lambda_ce": 0.5}), ignore_value=None)
    assert isinstance(loss, DiceCELoss)
    assert loss.lambda_ce == 0.5


def test_focal_mean_over_valid_pixels_matches_monai_on_the_valid_crop() -> None:
    """With the ignored rows cut away, the masked focal loss equals MONAI's on the rest."""
    from monai.losses import FocalLoss

    logits, target = _batch(2)
    target[:, :, :4, :] = 255
    masked = build_loss(ComponentConfig(name="Focal"), ignore_value=255)(logits, target)
    crop = FocalLoss(to_onehot_y=True, use_softmax=True)(logits[:, :, 4:], target[:, :, 4:])
    assert torch.allclose(masked, crop, atol=1e-6)
