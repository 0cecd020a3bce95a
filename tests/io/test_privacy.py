"""Pseudonyms are keyed, redaction hides whole names only, and log records (library warnings
included) go through it."""

from __future__ import annotations

import hashlib
import logging
import stat
import warnings
from pathlib import Path

import pytest

from medseg.io import privacy
from medseg.io.privacy import Redactor, escape_controls, hidden, log_filter, pseudonym


@pytest.fixture
def fresh_key(tmp_path, monkeypatch):
    monkeypatch.setattr(privacy, "KEY_FILE", tmp_path / "home" / "pseudonym.key")
    monkeypatch.setattr(privacy, "_key", None)
    yield tmp_path / "home" / "pseudonym.key"
    monkeypatch.setattr(privacy, "_key", None)


def test_the_pseudonym_is_keyed_by_a_secret_of_the_installation(fresh_key, monkeypatch):
    name = "DURAND^ELODIE/CT/IM0013.dcm"
    first = pseudonym(name)
    assert fresh_key.is_file() and stat.S_IMODE(fresh_key.stat().st_mode) == 0o600
    assert len(fresh_key.read_bytes()) == 32
    assert pseudonym(name) == first  # stable on this installation
    # a guessed name cannot be confirmed with an unkeyed hash
    assert first[1:] != hashlib.sha1(name.encode()).hexdigest()[:12]
    assert first[1:] != hashlib.sha256(name.encode()).hexdigest()[:12]
    monkeypatch.setattr(privacy, "_key", None)
    fresh_key.write_bytes(b"\x01" * 32)  # another installation
    assert pseudonym(name) != first


def test_redaction_hides_paths_and_file_names_but_not_words(fresh_key):
    root = Path("/data/in")
    r = Redactor(root, [root / "DURAND^ELODIE" / "CT" / "DURAND_0013.dcm"])
    series = f"<{pseudonym('DURAND^ELODIE/CT')}>"
    patient = f"<{pseudonym('DURAND^ELODIE')}>"
    file = f"<{pseudonym('DURAND^ELODIE/CT/DURAND_0013.dcm')}>"
    text = "read /data/in/DURAND^ELODIE/CT/DURAND_0013.dcm, DURAND_0013.dcm; in DURAND^ELODIE/CT"
    assert r(text) == f"read {file}, {file}; in {series}"
    assert r("folder DURAND^ELODIE") == f"folder {patient}"
    # a sub-folder's bare name is a word of its own; longer names only match whole
    assert r("Modality CT; DURAND_0013.dcm.bak") == "Modality CT; DURAND_0013.dcm.bak"


def test_control_characters_are_escaped():
    assert escape_controls("scan\x1b]0;owned\x07.png\tok\n") == "scan\\x1b]0;owned\\x07.png\tok\n"


def test_library_warnings_reach_the_log_redacted(fresh_key, capsys):
    handler = logging.StreamHandler()
    handler.addFilter(log_filter())
    logger = logging.getLogger()
    logger.addHandler(handler)
    # pytest restores warnings.showwarning after each test, so a command run by an earlier test may
    # have left logging believing it still captures warnings: start from scratch
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    try:
        secret = Path("/in/ÉLODIE_DURAND/ÉLODIE_DURAND_0013.dcm")
        with hidden(Redactor(Path("/in"), [secret])), warnings.catch_warnings():
            warnings.simplefilter("always")
            message = f"End of file reached before delimiter found in file {secret}"
            warnings.warn(message, UserWarning, stacklevel=1)
            logging.getLogger("pydicom").warning("reading %s", secret)
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    token = f"<{pseudonym('ÉLODIE_DURAND/ÉLODIE_DURAND_0013.dcm')}>"
    assert err.count(token) == 2 and "ÉLODIE" not in err and "DURAND" not in err
    assert not log_filter().redactors  # nothing left hidden after the context
