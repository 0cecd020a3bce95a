"""What made a run: medseg's version and git commit, the date, the machine and device, the
command and a digest of the configuration. Written to ``provenance.json``, shown in the report and
set as MLflow tags. The command is recorded as typed (its paths as given), with every value that can
carry a credential masked (:func:`command_line`).
"""

from __future__ import annotations

import hashlib
import platform
import re
import shlex
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


SECRET_WORDS = ("uri", "url", "password", "passwd", "token", "secret", "credential", "auth", "key")
"""A ``--set`` key or ``--option`` whose last word contains one of these can carry a credential
(``tracking.uri``, ``predict.dicomweb.url``, a password or token): its value is never recorded."""
MASK = "***"


def secret_key(key: str) -> bool:
    """Whether a settings key or option name can carry a credential (:data:`SECRET_WORDS`).

    Example:
        >>> secret_key("tracking.uri"), secret_key("--tracking-uri"), secret_key("train.epochs")
        (True, True, False)
    """
    last = key.lstrip("-").rsplit(".", 1)[-1].lower()
    return any(word in last for word in SECRET_WORDS)


USERINFO = re.compile(r"(\w[\w+.-]*://)[^\s]*@")  # greedy: a password may hold "/" or "@"


def _word(arg: str, secret: bool) -> str:
    """One argument as recorded: masked whole (``secret``), its value masked (``key=value`` or
    ``--option=value`` with a secret key), or as typed with any URI's user and password masked."""
    if secret:
        return MASK
    key, eq, value = arg.partition("=")
    if eq and key and secret_key(key):
        return f"{shlex.quote(key)}={MASK}"
    return shlex.quote(USERINFO.sub(r"\1***@", arg))


def command_line(argv: list[str]) -> str:
    """The command that started a run, as typed (paths as given, so it runs again from the same
    folder), each word quoted for a POSIX shell; the values of keys that can carry a credential
    (:func:`secret_key`) and the user and password of any URI are masked.

    Example:
        >>> command_line(["/usr/bin/medseg", "run", "pipelines/isic.yaml", "--set", "train.epochs=2",
        ...               "--set", "tracking.uri=postgresql://ann:pw@db/ml", "--set", "name=a b"])
        "medseg run pipelines/isic.yaml --set train.epochs=2 --set tracking.uri=*** --set 'name=a b'"
    """
    first = Path(argv[0]).name if argv else "medseg"
    out = ["medseg" if first in ("__main__.py", "-m", "-c", "") else shlex.quote(first)]
    secret_next = False
    for arg in argv[1:]:
        out.append(_word(arg, secret_next))
        secret_next = arg.startswith("-") and "=" not in arg and secret_key(arg)
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
