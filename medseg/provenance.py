"""What made a run: medseg's version and git commit, the date, the machine and device, the
command and a digest of the configuration. Written to ``provenance.json``, shown in the report and
set as MLflow tags; nothing in it names a patient or holds a credential.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medseg import __version__


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the git checkout medseg runs from, ``+dirty`` when it has changes; None outside
    one (an installed wheel)."""
    where = where or Path(__file__).resolve().parent.parent
    if not (where / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return (commit + ("+dirty" if dirty.stdout.strip() else "")) if head.returncode == 0 and commit else None


def device_name(device: str) -> str:
    """The device a run uses, in words: the GPU's name, or the CPU's core count."""
    import torch

    from medseg.runtime import cpu_cores, pick_device

    if pick_device(device).type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {cpu_cores()} core(s), {torch.get_num_threads()} torch thread(s)"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, the first 16 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def command_line(argv: list[str]) -> str:
    """The command that started a run, without anything that could name a patient or hold a
    secret: file arguments by their names only, ``--set`` values left out.

    Example:
        >>> command_line(["/usr/bin/medseg", "run", "/data/Doe/isic.yaml", "--set", "data.root=/data/Doe"])
        'medseg run isic.yaml --set data.root=...'
    """
    first = Path(argv[0]).name if argv else "medseg"
    out = ["medseg" if first == "__main__.py" else first]
    for arg in argv[1:]:
        if "=" in arg:
            out.append(arg.split("=", 1)[0] + "=...")
        else:
            out.append(Path(arg).name if "/" in arg else arg)
    return " ".join(out)


def provenance(config: Path, device: str) -> dict[str, Any]:
    """The provenance of a run about to start from the resolved ``config``."""
    return {
        "medseg_version": __version__,
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.node()} ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()})",
        "device": device_name(device),
        "command": command_line(sys.argv),
        "config_digest": file_digest(config),
    }
