"""The uncertainty score of an ensemble, how well it ranks the worst cases, and the review threshold
chosen from them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medseg.evaluate.uncertainty import auroc_se, ranking, review_rule
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


def _spread(n_low: int, n_high: int, overlap: int = 0, low_score: float = -1.0) -> list[dict]:
    """``n_low`` bad cases (Dice 0.5) with scores 0.5, 0.49, ... and ``n_high`` good ones (0.95)
    with scores 0.0, 0.01, ...; the last ``overlap`` bad cases score ``low_score``."""
    bad = [(f"b{i}", 0.5, 0.5 - i / 100) for i in range(n_low)]
    good = [(f"g{i}", 0.95, i / 100) for i in range(n_high)]
    for i in range(overlap):
        bad[n_low - 1 - i] = (f"b{n_low - 1 - i}", 0.5, low_score)
    return _rows(bad + good)


def test_ranking_gives_auroc_with_its_error_from_five_cases_on_each_side() -> None:
    perfect = ranking(_spread(5, 6))
    assert perfect["auroc"] == 1.0 and perfect["spearman"] < -0.8
    assert (perfect["n"], perfect["n_low"], perfect["n_high"]) == (11, 5, 6)
    assert perfect["auroc_se"] == pytest.approx(auroc_se(1.0, 5, 6)) and perfect["auroc_se"] == 0.0
    one_missed = ranking(_spread(5, 6, overlap=1))  # one bad case ranked below every good one
    assert one_missed["auroc"] == pytest.approx(24 / 30)
    assert auroc_se(0.8, 5, 50) == pytest.approx(0.1225, abs=1e-4)  # Hanley and McNeil (1982)
    inverted = ranking(
        _rows([(f"b{i}", 0.5, 0.01 * i) for i in range(5)] + [(f"g{i}", 0.97, 0.6) for i in range(5)])
    )
    assert inverted["auroc"] == 0.0


def test_ranking_gives_counts_and_no_auroc_below_five_cases_on_a_side() -> None:
    one_bad = ranking(_spread(1, 30))  # a perfect ranking of one bad case still says little
    assert one_bad["auroc"] is None and one_bad["auroc_se"] is None
    assert (one_bad["n_low"], one_bad["n_high"]) == (1, 30)
    assert (
        one_bad["reason"]
        == "1 case(s) below Dice 0.9 and 30 at or above it: an AUROC needs at least 5 on each side"
    )
    assert one_bad["spearman"] is not None  # the correlation over all cases is still given
    none_low = ranking(_rows([("a", 0.95, 0.1), ("b", 0.93, 0.2), ("c", 0.99, 0.0)]))
    assert none_low["auroc"] is None and "0 case(s) below Dice 0.9" in none_low["reason"]
    assert none_low["spearman"] == pytest.approx(-1.0)
    few = ranking(_rows([("a", 0.5, 0.1)]))
    assert few["auroc"] is None and few["spearman"] is None and "at least 3" in few["reason"]


def test_the_page_shows_the_counts_and_no_auroc_for_one_bad_case() -> None:
    from medseg.report.pages import uncertainty_text

    text = uncertainty_text({"uncertainty": ranking(_spread(1, 30))})
    assert "1 have a class-mean Dice below 0.9 and 30 do not" in text
    assert "no AUROC (1 case(s) below Dice 0.9 and 30 at or above it" in text and "AUROC 1" not in text
    text = uncertainty_text({"uncertainty": ranking(_spread(5, 6, overlap=1))})
    assert "AUROC 0.800 ± 0." in text and "(standard error)" in text


def test_review_threshold_catches_the_share_of_bad_cases_it_is_chosen_for() -> None:
    rows = _spread(10, 40)  # bad: 0.5 ... 0.41, good: 0.0 ... 0.39
    rule = review_rule(rows)
    # 80% of 10 bad cases: the 8th highest bad score is 0.43; the next lower score is 0.42
    assert rule["study_threshold"] == pytest.approx(0.425) and rule["threshold"] == rule["study_threshold"]
    assert rule["source"] == "study" and (rule["n"], rule["n_low"]) == (50, 10)
    assert (rule["caught"], rule["flagged"]) == (8, 8)
    assert rule["catch_rate"] == pytest.approx(0.8) and rule["flag_rate"] == pytest.approx(8 / 50)
    # three bad cases score 0.105, among the good ones: the 8th highest bad score is theirs
    overlapping = review_rule(_spread(10, 40, overlap=3, low_score=0.105))
    assert overlapping["threshold"] == pytest.approx(0.1025)  # halfway down to the good case at 0.10
    assert overlapping["catch_rate"] == 1.0  # the three tied cases are caught together
    assert overlapping["flagged"] == 10 + 29  # at the price of the good cases scoring 0.11 ... 0.39
    set_by_user = review_rule(rows, set_threshold=0.2)
    assert set_by_user["threshold"] == 0.2 and set_by_user["source"] == "predict.review_threshold"
    assert set_by_user["study_threshold"] == pytest.approx(0.425)
    assert (set_by_user["caught"], set_by_user["flagged"]) == (10, 10 + 19)  # good scores 0.21 ... 0.39
    no_bad = review_rule(_rows([("a", 0.95, 0.1), ("b", 0.93, 0.2)]))
    assert (
        no_bad["threshold"] is None and no_bad["source"] == "none" and "no held-out case" in no_bad["reason"]
    )
    unscored = review_rule([{"case": "a", "label": 1, "dice": 0.5}])
    assert unscored["threshold"] is None and "evaluate.uncertainty" in unscored["reason"]


def test_ranking_uses_the_class_mean_of_each_case() -> None:
    rows = [
        {"case": c, "label": k, "dice": d, "uncertainty": u}
        for c, u, dices in [("a", 0.3, (0.95, 0.5)), ("b", 0.1, (0.95, 0.95)), ("c", 0.2, (0.9, 0.92))]
        for k, d in zip((1, 2), dices, strict=True)
    ]
    out = ranking(rows)
    assert out["n"] == 3 and out["n_low"] == 1 and out["spearman"] == pytest.approx(-1.0)
    # class 1 alone is good in every case; the class mean makes "a" the one bad case
    assert review_rule(rows)["study_threshold"] == pytest.approx(0.25)


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
    settings = (cfg.transforms, cfg.infer, inferer, cpu)
    _, steady = predict_scored([_Centre()], image, *settings, score_flips=True, progress=seen.append)
    _, flipped = predict_scored([_Half()], image, *settings, score_flips=True)
    _, unscored = predict_scored([_Half()], image, *settings)
    assert steady.flips == 0.0 and flipped.flips > 0.3 and math.isnan(unscored.flips)
    assert math.isnan(steady.folds)  # one model: no fold disagreement
    assert seen[-1] == 1.0 and seen == sorted(seen)
    # predict: the flip score is the first model's alone, the same quantity as a held-out case's
    _, two = predict_scored([_Centre(), _Half()], image, *settings, score_flips=True)
    assert two.flips == steady.flips == 0.0 and two.folds > 0.1
    _, two = predict_scored([_Half(), _Centre()], image, *settings, score_flips=True)
    assert two.flips == pytest.approx(flipped.flips) and two.folds > 0.1
    _, plain = predict_scored([_Half(), _Centre()], image, *settings)
    assert math.isnan(plain.flips) and plain.folds == pytest.approx(two.folds)


class _Counting(torch.nn.Module):
    """A two-class network whose output depends on the whole window (so the windows' overlap shows
    in the blended result); it counts the windows it is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        fg = x[:, :1] * x.mean(dim=(1, 2, 3), keepdim=True) * 10
        return torch.cat([torch.zeros_like(fg), fg], 1)


def test_the_score_flips_take_the_score_overlap_and_the_prediction_keeps_its_own(tmp_path) -> None:
    from medseg.config.load import load_pipeline
    from medseg.infer.sliding import predict_scored, window_count
    from medseg.registry import build_inferer

    from ..conftest import ROOT

    cfg = load_pipeline(ROOT / "pipelines" / "demo.yaml", ["transforms.spatial_size=[64, 64]"])
    infer = cfg.infer.model_copy(update={"roi_size": [16, 16], "overlap": 0.5})
    image, cpu = torch.rand(3, 64, 64), torch.device("cpu")
    seen: list[float] = []
    for score_overlap, each_flip in ((0.0, 16), (0.5, 49)):
        scored = infer.model_copy(update={"score_overlap": score_overlap})
        model = _Counting()
        inferer = build_inferer(scored, [16, 16])
        probs, _ = predict_scored(
            [model], image, cfg.transforms, scored, inferer, cpu, score_flips=True, progress=seen.append
        )
        assert window_count((64, 64), (16, 16), score_overlap) == each_flip
        assert model.windows == 49 + 2 * each_flip  # the prediction's pass at 0.5, two flips alone
        assert seen[-1] == 1.0
        unscored, _ = predict_scored([model], image, cfg.transforms, scored, inferer, cpu)
        assert torch.equal(unscored, probs)  # the prediction itself does not depend on it
    tiled = infer.model_copy(update={"overlap": 0.0})
    other, _ = predict_scored([model], image, cfg.transforms, tiled, build_inferer(tiled, [16, 16]), cpu)
    assert not torch.allclose(other, probs)  # (it would show if the prediction's overlap changed)
    tta = infer.model_copy(update={"tta_flips": True, "score_overlap": 0.0})
    model = _Counting()
    predict_scored([model], image, cfg.transforms, tta, build_inferer(tta, [16, 16]), cpu, score_flips=True)
    assert model.windows == 4 * 49  # test-time flips are the prediction's: its own overlap
