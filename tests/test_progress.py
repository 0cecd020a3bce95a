"""Log lines and progress bars on one terminal: never on the same line."""

from __future__ import annotations

import io
import logging
import re

from tqdm import tqdm

from medseg.progress import TqdmHandler


def _screen_lines(handler_type: type[logging.StreamHandler]) -> list[str]:
    """What a terminal shows of a bar moving while three lines are logged: every text between
    line feeds and carriage returns."""
    buf = io.StringIO()
    bar = tqdm(total=3, file=buf, ncols=60, mininterval=0, ascii=True)
    handler = handler_type(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"test.progress.{handler_type.__name__}")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    for i in range(3):
        bar.update()
        log.info("07:00:0%d INFO fold %d done", i, i)
    bar.close()
    return [seg for raw in buf.getvalue().split("\n") for seg in raw.split("\r")]


def test_log_lines_never_share_a_line_with_a_bar() -> None:
    lines = [s for s in _screen_lines(TqdmHandler) if "INFO" in s]
    assert [re.sub(r"\s+$", "", s) for s in lines] == [f"07:00:0{i} INFO fold {i} done" for i in range(3)]


def test_a_plain_handler_would_mix_them() -> None:
    mixed = [s for s in _screen_lines(logging.StreamHandler) if "INFO" in s]
    assert any("|" in s for s in mixed)  # the bar's text and a log line on one line


def test_the_study_bar_counts_every_fold_and_the_epochs_early_stopping_leaves(monkeypatch) -> None:
    from medseg import progress

    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    study = progress.StudyBar([1, 3], epochs=4)
    assert study.eta() == "time left unknown until an epoch has run"
    study.skip(1)  # finished earlier: its 4 epochs count as done
    study.epoch(3, 1, 0.5)
    assert study.bar.desc.startswith("fold 3 (2/2) epoch 1/4") and study.bar.n == 5
    study.note(3, "held-out case 2/7")
    assert study.bar.desc == "fold 3 (2/2) held-out case 2/7"
    assert study.eta().endswith("left in the study") or study.eta() == "under a minute left"
    study.skip(3)  # stopped early after 1 epoch: the other 3 count as done
    assert study.bar.n == study.bar.total == 8
    study.close()
