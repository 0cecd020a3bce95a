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
