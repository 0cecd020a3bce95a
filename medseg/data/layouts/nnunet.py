"""nnU-Net v2 and Decathlon data sets: cases from ``dataset.json`` and the folders beside it.

nnU-Net: every ``imagesTr/{CASE}_{XXXX}{ending}`` file is a channel of ``CASE`` (channels numbered
0000, 0001, ... without gaps, the same in every case), its label ``labelsTr/{CASE}{ending}``; or
the explicit ``dataset`` lists when the file has them. Decathlon: the ``training`` list, one 4D
image per case holding every channel. Paths in ``dataset.json`` are relative to the data set.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from medseg.config.models import DataConfig
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.dataset_json import DatasetInfo, read_dataset_json
from medseg.io.names import normalise_id
from medseg.io.readers import source_of

log = logging.getLogger(__name__)
Bad = dict[str, str]


def channel_files(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    """``{CASE: {channel: file}}`` of the ``{CASE}_{XXXX}{ending}`` files in ``folder`` (others ignored).

    Example:
        >>> channel_files(Path("/nonexistent"), ".nii.gz")
        {}
    """
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending), re.IGNORECASE)
    found: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if (m := pattern.fullmatch(path.name)) and not path.name.startswith("."):
            found.setdefault(normalise_id(m.group(1)), {})[int(m.group(2))] = path
    return found


def _from_folders(root: Path, info: DatasetInfo) -> dict[str, tuple[list[Path], Path]]:
    images = channel_files(root / "imagesTr", info.file_ending)
    if not images:
        raise DataError(
            f"{root / 'imagesTr'}: no {{CASE}}_{{XXXX}}{info.file_ending} files; an nnU-Net data set "
            "keeps its "
            "training images there (CASE_0000, CASE_0001, ... one file per channel)"
        )
    return {
        case_id: ([files[k] for k in sorted(files)], root / "labelsTr" / f"{case_id}{info.file_ending}")
        for case_id, files in images.items()
    }


def dataset_cases(data: DataConfig) -> tuple[list[Case], list[Bad]]:
    """The training cases of an nnU-Net (``data.layout: nnunet``) or Decathlon data set.

    Returns:
        (cases, bad cases with a reason: missing or gapped channel files, a missing label).

    Raises:
        DataError: ``dataset.json`` or ``imagesTr`` is missing or malformed (``data.root``: list_cases).
    """
    root = Path(data.root)  # a folder: list_cases checked it
    info = read_dataset_json(root, data.layout)
    listed = (
        {k: ([root / i for i in v[0]], root / v[1]) for k, v in info.training.items()}
        if info.training is not None
        else _from_folders(root, info)
    )
    if info.num_training is not None and info.num_training != len(listed):
        log.warning(
            "%s: numTraining is %s but %d training cases are there",
            root / "dataset.json",
            info.num_training,
            len(listed),
        )
    counts = {len(images) for images, _ in listed.values()}
    expected = max(counts) if counts else 0
    cases: list[Case] = []
    bad: list[Bad] = []
    for case_id, (images, label) in sorted(listed.items()):
        reason = _problem(case_id, images, label, expected, info.training is None)
        if reason:
            bad.append({"id": case_id, "reason": reason})
        else:
            cases.append(Case(case_id, tuple(source_of(p) for p in images), source_of(label)))
    return cases, bad


def gapped(channels: list[int]) -> str:
    """Why channel files so numbered cannot be a case's channels."""
    return f"channel files {[f'{c:04d}' for c in channels]} are not numbered 0000, 0001, ... without a gap"


def _problem(case_id: str, images: list[Path], label: Path, expected: int, numbered: bool) -> str | None:
    if numbered and len(images) != expected:
        have = ", ".join(p.name for p in images)
        return (
            f"{len(images)} channel file(s) ({have}); the other cases have {expected} "
            f"(_0000 to _{expected - 1:04d})"
        )
    if numbered:
        channels = [int(p.name[len(case_id) + 1 : len(case_id) + 5]) for p in images]
        if channels != list(range(len(images))):
            return gapped(channels)
    gone = [p for p in (*images, label) if not p.exists()]
    if gone:
        return f"{gone[0]} not found"
    return None
