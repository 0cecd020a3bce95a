"""What stands for a file name that may not be shown, and the redaction of messages.

Real DICOM exports name files and folders after the patient (``DURAND^ELODIE/CT/IM0001``), so
medseg never shows a DICOM file or folder name, in any command: each is replaced by a pseudonym,
``p`` and a keyed hash of its path inside the data folder (``data.root`` or ``--input``). The key is
a secret of this installation (:func:`secret`, 32 random bytes written once, readable by its owner
alone, never part of any output), so a pseudonym cannot be confirmed by hashing a guessed name.
Names made by the user for medseg (case ids, NIfTI and picture files, which name the outputs) are
shown.

Library messages (pydicom's warnings name the file they read) go through the same redaction as
medseg's own lines: :class:`RedactingFilter` on the log handlers, with Python warnings routed into
logging by the command line set-up. Control characters of any name are escaped, so a crafted file
name cannot drive the terminal.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

KEY_FILE = Path("~/.config/medseg/pseudonym.key")
_key: bytes | None = None
log = logging.getLogger(__name__)


def secret() -> bytes:
    """This installation's pseudonym key: read from ``~/.config/medseg/pseudonym.key``, created
    there (mode 0600) on first use; a key for this process alone when the file cannot be written."""
    global _key
    if _key is None:
        path = KEY_FILE.expanduser()
        try:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(32))
            _key = path.read_bytes()
        except FileExistsError:  # written by a process beside this one
            _key = path.read_bytes()
        except OSError:
            log.warning("%s cannot be written: pseudonyms of this process are its own", path)
            _key = secrets.token_bytes(32)
    return _key


def pseudonym(relative: str, n: int = 12) -> str:
    """``p`` and a keyed hash of a path inside the data folder (``n`` hex characters).

    Example:
        >>> a = pseudonym("Doe^John/IM1.dcm"); a == pseudonym("Doe^John/IM1.dcm"), a[0], len(a)
        (True, 'p', 13)
    """
    mac = hmac.new(secret(), relative.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return "p" + mac.hexdigest()[:n]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    r"""``text`` with control characters (ESC, BEL, ...) written as ``\xNN``; newlines and tabs kept.

    Example:
        >>> escape_controls("a\x1b[2Jb\n")
        'a\\x1b[2Jb\n'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Redactor:
    """Replaces the names of files and folders under a root by their pseudonyms in any text.

    Every file given and each folder above it inside ``root`` is known by its absolute path and
    its path inside ``root``, a file also by its bare name (a folder's bare name, such as ``CT``,
    is too often a word of its own); the longest match wins, and a name counts only as a whole
    word (not inside a longer name).

    Args:
        root: the data folder the pseudonyms are relative to.
        files: the files whose names may not be shown.

    Example:
        >>> r = Redactor(Path("/in"), [Path("/in/Doe^John/CT/IM1.dcm")])
        >>> r("gap after IM1.dcm in /in/Doe^John/CT") == (
        ...     f"gap after <{pseudonym('Doe^John/CT/IM1.dcm')}> in <{pseudonym('Doe^John/CT')}>")
        True
    """

    def __init__(self, root: Path, files: Iterable[Path] = ()) -> None:
        self.root = Path(root)
        self.tokens: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self.add(files)

    def add(self, files: Iterable[Path]) -> None:
        """Also hide these files and their folders inside the root."""
        for path in files:
            path = Path(path)
            rel = path.relative_to(self.root) if path.is_relative_to(self.root) else Path(path.name)
            for part in (rel, *rel.parents[:-1]):
                token = f"<{pseudonym(part.as_posix())}>"
                names = (str(self.root / part), part.as_posix(), *([part.name] if part == rel else []))
                for name in names:
                    self.tokens.setdefault(name, token)
        self._pattern = None

    def __call__(self, text: str) -> str:
        if not self.tokens:
            return text
        if self._pattern is None:
            names = sorted(self.tokens, key=len, reverse=True)
            self._pattern = re.compile(
                r"(?<![\w^.\-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w^.\-])"
            )
        return self._pattern.sub(lambda m: self.tokens[m.group(1)], text)


class RedactingFilter(logging.Filter):
    """A log filter that passes every record's text through the redactors it holds (added while a
    command reads data whose names may not be shown) and escapes control characters."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: list[Redactor] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for redact in self.redactors:
            text = redact(text)
        record.msg, record.args = escape_controls(text), None
        return True


_FILTER = RedactingFilter()


def log_filter() -> RedactingFilter:
    """The one redacting filter of this process (the command line puts it on every log handler)."""
    return _FILTER


class hidden:
    """While in this context, log lines (library warnings included) show ``redactor``'s names as
    pseudonyms.

    Example:
        >>> with hidden(Redactor(Path("/in"), [Path("/in/Doe/IM1.dcm")])):
        ...     len(log_filter().redactors)
        1
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __enter__(self) -> Redactor:
        _FILTER.redactors.append(self.redactor)
        return self.redactor

    def __exit__(self, *exc: object) -> None:
        _FILTER.redactors.remove(self.redactor)
