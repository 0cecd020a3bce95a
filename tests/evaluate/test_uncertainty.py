"""The uncertainty score of an ensemble and how well it ranks the worst cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medseg.evaluate.uncertainty import ranking
from medseg.infer.uncertainty import disagreement


def _rows(cases: list[tuple[str, float, float]]) -> list[dict]:
    return [{"case": c, "label": 1, "dice": d, "uncertainty": u} for c, d, u in cases]


def test_disagreement_is_zero_for_agreement_and_grows_with_it() -> None:
    a = torch.zeros(8, 8, dtype=torch.uint8)
    a[2:6, 2:6] = 1
    b = a.clone()
    b[2:6, 4:6] = 0  # half of a
    assert disagreement([a, a, a], a, 2) == 0.0
    assert disagreement([a, b], a, 2) == pytest.approx(1 - (1 + 2 * 8 / 24) / 2)
    assert math.isnan(disagreement([a], a, 2))  # one member: no score
    empty = torch.zeros_like(a)
    assert disagreement([empty, empty], empty, 2) == 0.0  # both empty: agreement


def test_ranking_gives_auroc_and_spearman_and_says_why_not() -> None:
    perfect = ranking(_rows([("a", 0.95, 0.01), ("b", 0.5, 0.4), ("c", 0.8, 0.2), ("d", 0.93, 0.05)]))
    assert perfect["auroc"] == 1.0 and perfect["spearman"] == pytest.approx(-1.0)
    assert (perfect["n"], perfect["n_low"]) == (4, 2)
    inverted = ranking(_rows([("a", 0.95, 0.5), ("b", 0.5, 0.01), ("c", 0.97, 0.6)]))
    assert inverted["auroc"] == 0.0
    none_low = ranking(_rows([("a", 0.95, 0.1), ("b", 0.93, 0.2), ("c", 0.99, 0.0)]))
    assert none_low["auroc"] is None and "no case has a Dice below 0.9" in none_low["reason"]
    assert none_low["spearman"] == pytest.approx(-1.0)
    few = ranking(_rows([("a", 0.5, 0.1)]))
    assert few["auroc"] is None and few["spearman"] is None and "at least 3" in few["reason"]


def test_ranking_uses_the_class_mean_of_each_case() -> None:
    rows = [
        {"case": c, "label": k, "dice": d, "uncertainty": u}
        for c, u, dices in [("a", 0.3, (0.95, 0.5)), ("b", 0.1, (0.95, 0.95)), ("c", 0.2, (0.9, 0.92))]
        for k, d in zip((1, 2), dices, strict=True)
    ]
    out = ranking(rows)
    assert out["n"] == 3 and out["n_low"] == 1 and out["auroc"] == 1.0


class _Half(nn.Module):
    """Foreground where the input's left half is: its flips disagree with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = torch.zeros_like(x[:, :1])
        fg[..., : x.shape[-1] // 2] = 1
        return torch.cat([1 - fg, fg], 1) * 20


class _Centre(nn.Module):
    """Foreground on a centred square: flips agree with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = torch.zeros_like(x[:, :1])
        fg[..., 8:24, 8:24] = 1
        return torch.cat([1 - fg, fg], 1) * 20


def test_held_out_flip_score_and_progress(tmp_path) -> None:
    from medseg.config.load import load_pipeline
    from medseg.infer.sliding import predict_scored
    from medseg.registry import build_inferer

    from ..conftest import ROOT

    cfg = load_pipeline(ROOT / "pipelines" / "demo.yaml", ["transforms.spatial_size=[32, 32]"])
    image = torch.rand(3, 32, 32)
    inferer, cpu = build_inferer(cfg.infer, cfg.roi_size), torch.device("cpu")
    seen: list[float] = []
    _, steady = predict_scored(
        [_Centre()], image, cfg.transforms, cfg.infer, inferer, cpu, score_flips=True, progress=seen.append
    )
    _, flipped = predict_scored([_Half()], image, cfg.transforms, cfg.infer, inferer, cpu, score_flips=True)
    _, unscored = predict_scored([_Half()], image, cfg.transforms, cfg.infer, inferer, cpu)
    assert steady == 0.0 and flipped > 0.3 and math.isnan(unscored)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    _, folds = predict_scored(
        [_Centre(), _Half()], image, cfg.transforms, cfg.infer, inferer, cpu
    )  # two fold models
    assert folds > 0.1
