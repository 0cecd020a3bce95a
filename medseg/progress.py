"""Progress on a terminal: log lines written through ``tqdm`` so they never cut into a progress bar,
and the study-wide bar of ``medseg run``.

Bars are drawn only when stderr is a terminal; in a log file or CI the log lines alone tell the
progress.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class TqdmHandler(logging.StreamHandler):
    """A log handler that prints through ``tqdm.write``: the bars are cleared, the line printed and
    the bars drawn again below it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise
            self.handleError(record)


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr, drawn only on a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not on_terminal(), dynamic_ncols=True)


class StudyBar:
    """The whole study in one bar: one step per epoch of every fold to train, the estimated time to
    the end of the study from the pace so far, and what runs now (fold k/N, epoch, held-out case).

    Args:
        folds: the folds this run trains.
        epochs: epochs per fold.
    """

    def __init__(self, folds: list[int], epochs: int) -> None:
        self.folds, self.epochs = folds, epochs
        self.bar = bar(len(folds) * epochs, "study", "epoch")
        self.done: dict[int, int] = {}
        self.trained, self.started = 0, time.monotonic()

    def fold(self, fold: int) -> str:
        return (
            f"fold {fold} ({self.folds.index(fold) + 1}/{len(self.folds)})"
            if fold in self.folds
            else f"fold {fold}"
        )

    def epoch(self, fold: int, epoch: int, loss: float) -> None:
        self.bar.set_description_str(f"{self.fold(fold)} epoch {epoch}/{self.epochs}", refresh=False)
        self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self.bar.update()
        self.done[fold] = self.done.get(fold, 0) + 1
        self.trained += 1

    def note(self, fold: int, text: str) -> None:
        self.bar.set_description_str(f"{self.fold(fold)} {text}", refresh=True)

    def skip(self, fold: int) -> None:
        """A fold finished earlier, or stopped early: the rest of its epochs count as done."""
        self.bar.update(max(0, self.epochs - self.done.get(fold, 0)))
        self.done[fold] = self.epochs

    def eta(self) -> str:
        """The study's time left at the pace of the epochs trained so far (early stopping makes it
        an upper bound), for the log, which has no bar."""
        if not self.trained:
            return "time left unknown until an epoch has run"
        left = (self.bar.total - sum(self.done.values())) * (time.monotonic() - self.started) / self.trained
        return f"about {left / 60:.0f} min left in the study" if left >= 60 else "under a minute left"

    def close(self) -> None:
        self.bar.close()
