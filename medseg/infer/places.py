"""Where ``medseg predict`` reads and writes, checked before torch and the models load.

A missing input folder, an ``--output`` that is a file (or lies under one), an output folder that
is the input folder or inside it (a later run would segment these outputs as inputs), a file system
that takes shorter names than medseg writes, or a ``--model`` run folder without ``config.yaml``:
each is refused at once, in well under a second, naming the folder and what to do. ``--output``
inside ``--input`` is refused rather than skipped while walking the input: the outputs would still
lie among the inputs, for any other tool, and for a later run with another ``--output``, to take
as inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import DataError, MedsegError
from medseg.io.names import check_name_room


def check_places(input_dir: Path, out_dir: Path) -> None:
    """Refuse a predict whose input or output folder cannot work.

    Args:
        input_dir: the folder tree to segment.
        out_dir: where the outputs go (made if absent).

    Raises:
        DataError: naming the folder and what to do.
    """
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        what = "is not a folder; give the folder that holds it" if input_dir.exists() else "folder not found"
        raise DataError(f"--input {input_dir}: {what}")
    check_output(out_dir)
    inp, out = input_dir.resolve(), out_dir.resolve()
    if out == inp or inp in out.parents:
        where = "is the input folder" if out == inp else f"lies inside --input {input_dir}"
        raise DataError(
            f"--output {out_dir} {where}: a later run would segment these outputs as inputs; give an "
            "output folder outside the input folder"
        )
    check_name_room(out_dir, "--output")


def check_output(out_dir: Path) -> None:
    """Refuse an output folder that is a file, lies under one, or cannot be written.

    Raises:
        DataError: naming the file or folder in the way.
    """
    out_dir = Path(out_dir)
    for place in (out_dir, *out_dir.absolute().parents):
        if not place.exists():
            continue
        if not place.is_dir():
            shown = "" if place == out_dir else f" ({place} is a file)"
            raise DataError(f"--output {out_dir}: not a folder{shown}; give a folder")
        if not os.access(place, os.W_OK | os.X_OK):
            raise DataError(f"--output {out_dir}: {place} cannot be written by this user; give another")
        return


def check_model(model: str) -> None:
    """Refuse a ``--model`` run folder that holds no ``config.yaml`` (an MLflow URI, ``runs:/`` or
    ``models:/``, is checked when it is downloaded), as :func:`medseg.infer.bundle.bundle_from_run_dir`
    would, but before the models load.

    Raises:
        MedsegError: naming the folder and what ``--model`` takes.
    """
    if model.startswith(("runs:/", "models:/")):  # medseg.tracking.models.MLFLOW_PREFIXES
        return
    if not (Path(model) / "config.yaml").is_file():
        raise MedsegError(f"{model}: no config.yaml; --model takes a run folder written by `medseg run`")
