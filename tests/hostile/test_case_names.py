"""Case ids that do not fit a file name as they are (100 CJK characters are 300 bytes; a name takes
255): ingest accepts them, and the held-out predictions and overlays written after training are
named by a shortened form with a hash, distinct for distinct ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from medseg.errors import DataError
from medseg.io.checkpoint import save_checkpoint
from medseg.io.names import NAME_MAX, byte_length
from medseg.pipeline.fold import evaluate_fold
from medseg.pipeline.stages import check_case_names, ingest
from medseg.registry import build_network
from medseg.run_dir import RunDir

from ..conftest import make_dataset, tiny_config

LONG = ["肝" * 100, "肝" * 99 + "臓", "腫瘍" * 60]


@dataclass
class _Trained:
    best_path: Path


def test_long_case_ids_train_predict_and_draw_into_files_that_fit(tmp_path, caplog):
    root = make_dataset(tmp_path / "d", n_cases=4, height=32, width=40)
    images, masks = root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth"
    rows = [
        {
            "id": case_id,
            "image": f"{images.name}/SYN{i:04d}.jpg",
            "label": f"{masks.name}/SYN{i:04d}_segmentation.png",
        }
        for i, case_id in enumerate([*LONG, "IMD002"])
    ]
    cfg = tiny_config(root, tmp_path / "run", data={"layout": "table", "cases": rows, "metadata": None})
    run = RunDir(cfg.output_dir)
    with caplog.at_level(logging.INFO):
        cases, bad = ingest(cfg, run.root)
    assert bad == [] and sorted(c.id for c in cases) == sorted([*LONG, "IMD002"])
    assert "3 case id(s) too long for a file name" in caplog.text
    fold = run.fold(0)
    torch.manual_seed(0)
    save_checkpoint(fold.best, {"model": build_network(cfg.network).state_dict()})
    rows_out = evaluate_fold(cfg, fold, cases, _Trained(fold.best))  # "File name too long" here once
    assert sorted({r["case"] for r in rows_out}) == sorted(c.id for c in cases)
    written = sorted(p.name for p in fold.predictions.iterdir())
    drawn = sorted(p.name for p in fold.overlays.iterdir())
    assert written == drawn and len(written) == 4 and "IMD002.png" in written
    assert max(byte_length(n) for n in written) <= NAME_MAX - 16
    for case in cases:
        assert fold.prediction(case.id, 2).is_file() and fold.overlay(case.id).is_file()


def test_ids_whose_file_names_would_coincide_are_refused_at_ingest(tmp_path):
    from medseg.io.case import Case
    from medseg.io.names import file_stem
    from medseg.io.source import Source

    source = Source.one("x.png", "raster")
    crafted = file_stem(LONG[0])  # another id spelled as the first one's shortened form
    with pytest.raises(DataError, match="would name the same prediction files; rename one"):
        check_case_names([Case(LONG[0], (source,)), Case(crafted, (source,))], tmp_path)
    check_case_names([Case(i, (source,)) for i in LONG], tmp_path)  # distinct ids, distinct names
