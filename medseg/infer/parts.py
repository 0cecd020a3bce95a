"""``medseg predict --part I/N``: one of N jobs sharing a batch and its output folder.

Part I takes every N-th input in key order, starting from the I-th, so the shares are disjoint,
cover every input and do not depend on the machine or the order files are listed in. Each part
writes its own ``manifest.partIofN.csv`` and ``summary.partIofN.json`` beside the shared outputs
(every file written under a temporary name and renamed, so a shared filesystem never shows a half
file); the part that finishes last, or ``medseg predict --merge``, writes ``manifest.csv`` and
``summary.json`` for the whole batch. Locks in ``.locks/`` (``predict.lock`` shared by parts, held
alone by a whole batch; one per part) keep a part from running twice and a whole batch from running
beside its parts; a job removes on its way out the locks no other job holds. ``parts.json`` records
how many parts share the folder: a part of another count is refused while that batch has parts
without a summary, since the two would split the inputs differently.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.infer.discover import InputItem
from medseg.infer.manifest import NAME, Manifest
from medseg.io.atomic import write_json
from medseg.io.lock import hold, remove_free

Part = tuple[int, int]
WHOLE: Part = (1, 1)
SUMMARY = "summary.json"
RECORD = "parts.json"
COUNTS = ("done", "done_earlier", "skipped", "failed", "review")
LOCKS = ".locks"


def parse_part(text: str) -> Part:
    """``I/N`` as (I, N), 1 <= I <= N.

    Example:
        >>> parse_part("2/4")
        (2, 4)
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise MedsegError(f"--part {text}: expected I/N with 1 <= I <= N, such as 1/4")
    return int(m.group(1)), int(m.group(2))


def suffix(part: Part) -> str:
    return "" if part[1] == 1 else f".part{part[0]}of{part[1]}"


def manifest_name(part: Part) -> str:
    return NAME.replace(".csv", f"{suffix(part)}.csv")


def summary_name(part: Part) -> str:
    return SUMMARY.replace(".json", f"{suffix(part)}.json")


def share(items: list[InputItem], part: Part) -> list[InputItem]:
    """The inputs of part ``part``: every N-th in key order from the I-th.

    Example:
        >>> items = [InputItem(k, "nifti") for k in "edcba"]
        >>> [i.key for i in share(items, (2, 2))], [i.key for i in share(items, (1, 2))]
        (['b', 'd'], ['a', 'c', 'e'])
    """
    ordered = sorted(items, key=lambda i: i.key)
    return ordered[part[0] - 1 :: part[1]]


@contextmanager
def holding(out_dir: Path, part: Part) -> Iterator[None]:
    """Hold the output folder for a whole batch, or share it with other parts and hold one part."""
    locks = out_dir / LOCKS
    with ExitStack() as stack:
        stack.enter_context(hold(locks / "predict.lock", f"{out_dir} (predict)", shared=part != WHOLE))
        if part != WHOLE:
            what = f"part {part[0]}/{part[1]} of {out_dir}"
            stack.enter_context(hold(locks / f"predict{suffix(part)}.lock", what))
            claim(out_dir, part)
        yield


@contextmanager
def tidied(out_dir: Path) -> Iterator[None]:
    """On the way out of a predict, whatever happened: the lock files no other job holds, and the
    ``.locks`` folder once empty (:func:`~medseg.io.lock.remove_free`); ``out_dir`` itself when this
    command made it and leaves it empty. What finished inputs wrote stays."""
    out_dir = Path(out_dir)
    made = not out_dir.exists()
    try:
        yield
    finally:
        remove_free(out_dir / LOCKS)
        if made:
            with suppress(OSError):
                out_dir.rmdir()


def claim(out_dir: Path, part: Part) -> None:
    """Record that ``part``'s batch of N parts shares ``out_dir``; refuse a part of another count
    while the batch recorded there has parts without a summary.

    Raises:
        MedsegError: naming both counts and the parts not finished.
    """
    with hold(out_dir / LOCKS / "merge.lock", f"merging {out_dir}", wait=True):
        other = recorded_parts(out_dir)
        if other is not None and other != part[1]:
            left = [
                f"{i}/{other}"
                for i in range(1, other + 1)
                if not (out_dir / summary_name((i, other))).is_file()
            ]
            if left:
                raise MedsegError(
                    f"{out_dir}: a batch of {other} parts (--part I/{other}) shares this folder and its "
                    f"part(s) {', '.join(left)} have not finished; this job is --part {part[0]}/{part[1]}, "
                    f"which splits the inputs differently. Run the parts as I/{other}, or give another "
                    "--output"
                )
        write_json(out_dir / RECORD, {"parts": part[1]})


def recorded_parts(out_dir: Path) -> int | None:
    """The part count of the latest batch of parts in ``out_dir`` (``parts.json``), or None."""
    try:
        n = json.loads((out_dir / RECORD).read_text())["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and n >= 1 else None


def merge(out_dir: Path, n: int | None = None, strict: bool = False) -> dict[str, Any] | None:
    """Write ``manifest.csv`` and ``summary.json`` from the N parts' files once all have finished.

    Args:
        out_dir: the shared output folder.
        n: the number of parts (default: as the part files found say).
        strict: raise when a part has not finished, naming it, rather than return None.

    Returns:
        The merged summary, or None when a part has not finished (and ``strict`` is false).
    """
    n = n or recorded_parts(out_dir) or _parts_found(out_dir)
    with hold(out_dir / LOCKS / "merge.lock", f"merging {out_dir}", wait=True):
        summaries = [out_dir / summary_name((i, n)) for i in range(1, n + 1)]
        missing = [f"{i}/{n}" for i, p in enumerate(summaries, 1) if not p.is_file()]
        if missing:
            if strict:
                raise MedsegError(
                    f"{out_dir}: part(s) {', '.join(missing)} have not finished; run them, then --merge"
                )
            return None
        parts = [json.loads(p.read_text()) for p in summaries]
        merged = Manifest(out_dir)  # rows of an earlier whole batch stay unless a part redid them
        for i in range(1, n + 1):
            with open(out_dir / manifest_name((i, n)), newline="") as fh:
                for row in csv.DictReader(fh):
                    merged.add_fields([row])
                    merged.rows[row["key"]] = row
        merged.record_all()
        summary = {
            **{k: sum(p.get(k, 0) for p in parts) for k in COUNTS},
            "inputs_per_minute": round(sum(p["inputs_per_minute"] or 0 for p in parts), 2),
            "seconds": max(p["seconds"] for p in parts),
            "parts": parts,
            **{k: parts[0][k] for k in ("model", "folds", "device")},
        }
        write_json(out_dir / SUMMARY, summary)
        return summary


def _parts_found(out_dir: Path) -> int:
    names = [p.name for p in out_dir.glob("summary.part*of*.json")]
    found = {int(m.group(1)) for name in names if (m := re.search(r"of(\d+)\.json$", name))}
    if not found:
        raise MedsegError(f"{out_dir}: no part summaries to merge; run the --part jobs first")
    if len(found) > 1:
        raise MedsegError(f"{out_dir}: part summaries of {sorted(found)} jobs; give --merge N's parts one N")
    return found.pop()
