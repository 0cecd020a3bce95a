"""DICOMweb settings: where secrets come from, and that none is shown."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from medseg.errors import MedsegError, hide, mask_credentials
from medseg.io.dicomweb import Credentials, Pacs, parse_url, shown

from .dicomweb_server import THREAD_PREFIX, FakeDicomweb, refusing_port


def test_a_token_from_a_file_or_the_environment_goes_into_the_header_only(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("tok-123\n")
    session = requests.Session()
    Credentials(token_file=tmp_path / "token").apply(session)
    assert session.headers["Authorization"] == "Bearer tok-123"
    monkeypatch.setenv("PACS_TOKEN", "tok-456")
    session = requests.Session()
    Credentials(token_env="PACS_TOKEN").apply(session)
    assert session.headers["Authorization"] == "Bearer tok-456"
    with pytest.raises(MedsegError, match=r"token file .*nowhere: cannot be read"):
        Credentials(token_file=tmp_path / "nowhere").apply(requests.Session())


def test_a_password_in_the_url_goes_to_the_session_and_never_into_a_message():
    pacs = Pacs("dicomweb+http://ann:pw-789@127.0.0.1:1/dicom-web", timeout=1, retries=0)
    assert pacs.name == "dicomweb+http://127.0.0.1:1/dicom-web" and "pw-789" not in pacs.client.base_url
    assert pacs.client._session.auth == ("ann", "pw-789")
    with pytest.raises(MedsegError) as err:
        pacs.find_series()
    assert "pw-789" not in str(err.value) and "127.0.0.1:1/dicom-web: the PACS does not answer" in str(
        err.value
    )
    assert shown("dicomweb+https://u:p@h/x") == "dicomweb+https://h/x"


NASTY = [  # (URL, user, password, host, port): "/", "@", ":" and percent-encoding in the password
    ("dicomweb+http://alice:FAKE/PW-333@127.0.0.1:1/dicom-web", "alice", "FAKE/PW-333", "127.0.0.1", 1),
    ("dicomweb+http://alice:FAKE@PW@444@pacs.example:8042/dcm", "alice", "FAKE@PW@444", "pacs.example", 8042),
    ("dicomweb+https://alice:FAKE:PW:555@pacs.example/web", "alice", "FAKE:PW:555", "pacs.example", 443),
    ("dicomweb+http://al%40ice:FAKE%2FPW%40666@10.0.0.7/x", "al@ice", "FAKE/PW@666", "10.0.0.7", 80),
    ("dicomweb+http://alice@127.0.0.1:8042/dicom-web", "alice", None, "127.0.0.1", 8042),
    ("dicomweb+http://127.0.0.1:8042/dicom-web/", None, None, "127.0.0.1", 8042),
]


@pytest.mark.parametrize(("url", "user", "password", "host", "port"), NASTY)
def test_a_url_is_taken_apart_at_the_last_at_sign_and_shown_without_its_credentials(
    url, user, password, host, port
):
    endpoint = parse_url(url)
    assert (endpoint.user, endpoint.password, endpoint.host, endpoint.port) == (user, password, host, port)
    assert "@" not in endpoint.base and "@" not in endpoint.shown and "FAKE" not in repr(endpoint)
    assert endpoint.shown == shown(url)
    assert endpoint.base == endpoint.shown.removeprefix("dicomweb+").rstrip("/")
    message = f"error: {url}: the PACS does not answer; see {url}"
    assert "FAKE" not in mask_credentials(message) and "al%40ice" not in mask_credentials(message)
    assert mask_credentials(message).count(f"{host}") == 2  # the host stays readable
    pacs = Pacs(url, timeout=1, retries=0)
    assert pacs.name == endpoint.shown and "FAKE" not in pacs.client.base_url
    assert pacs.client._session.auth == ((user, password or "") if user else None)


def test_masking_needs_no_parse_and_masks_more_rather_than_less():
    assert mask_credentials("x dicomweb+http://a:b/c@d@h:1/p y") == "x dicomweb+http://***@h:1/p y"
    assert mask_credentials("'http://a:b/c@h' and (https://u@h2)") == "'http://***@h' and (https://***@h2)"
    assert mask_credentials("http://h/a@b") == "http://***@b"  # an "@" in a path: masked, to be safe
    assert mask_credentials("no URI: user@example.org") == "no URI: user@example.org"
    hide("FAKE pw 777")  # a secret that no position gives away (a space), or one read from a file
    assert mask_credentials("dicomweb+http://a:FAKE pw 777@h/x and FAKE%20pw%20777") == (
        "dicomweb+http://a:***@h/x and FAKE%20pw%20777"
    )
    hide("FAKE%20pw%20888")
    assert mask_credentials("FAKE pw 888 / FAKE%20pw%20888") == "*** / ***"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("dicomweb+ftp://127.0.0.1:1/x", "dicomweb+ftp://127.0.0.1:1/x: expected dicomweb+http://"),
        ("dicomweb+http://", "dicomweb+http://: no host"),
        ("dicomweb+http://alice:FAKE/PW@", "dicomweb+http://: no host"),
        ("dicomweb+http:alice:FAKE@h/x", "dicomweb+http:***@h/x: expected dicomweb+http://"),
        ("dicomweb+http://h:99999/x", "h:99999/x: the port must be a number from 1 to 65535"),
        ("dicomweb+http://h:80a/x", "h:80a/x: the port must be a number from 1 to 65535"),
        ("dicomweb+http://a:FAKE pw@h/x", "dicomweb+http://h/x: a URL holds no spaces"),
        ("dicomweb+http://h/x?limit=1", "takes no query"),
    ],
)
def test_a_malformed_url_is_one_clear_line_without_its_credentials(url, says):
    with pytest.raises(MedsegError, match="^--input ") as err:
        parse_url(url)
    assert says in str(err.value) and "FAKE" not in str(err.value)


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith(THREAD_PREFIX)}


@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("mode", ["silent", "trickle", "trickle_headers"])
def test_a_pacs_that_is_silent_or_trickles_ends_within_the_timeout_retries_included(mode, retries):
    before = _threads()
    with FakeDicomweb(mode, interval=0.5) as server:
        pacs = Pacs(server.url, timeout=2, retries=retries)
        t0 = time.perf_counter()
        with pytest.raises(MedsegError) as err:
            pacs.find_series()
        elapsed = time.perf_counter() - t0
    assert str(err.value) == (
        f"dicomweb+http://127.0.0.1:{server.port}/dicom-web: the PACS does not answer while searching "
        "for series: no complete answer within 2 s; check that it runs and is not overloaded, or raise "
        "predict.dicomweb.timeout"
    )
    assert 2 <= elapsed < 3.5, elapsed  # the whole answer's deadline, not one read's
    assert server.requests >= 1
    assert _threads() == before  # no watchdog left running


def test_the_timeout_given_wins_over_dicomweb_clients_own():
    with FakeDicomweb("silent") as server:
        pacs = Pacs(server.url, timeout=30, retries=0)
        assert pacs.client._timeout == 30
        pacs.timeout = pacs.client._session.timeout = 1  # a caller's own timeout is overridden too
        pacs.client._timeout = 20
        t0 = time.perf_counter()
        with pytest.raises(MedsegError, match="no complete answer within 1 s"):
            pacs.find_series()
        assert time.perf_counter() - t0 < 2


def test_a_refused_connection_fails_at_once_without_retries_and_says_nothing_listens(caplog):
    with refusing_port() as port:
        pacs = Pacs(f"dicomweb+http://127.0.0.1:{port}/dicom-web", timeout=30, retries=5)
        t0 = time.perf_counter()
        with caplog.at_level("DEBUG"), pytest.raises(MedsegError) as err:
            pacs.find_series()
        assert time.perf_counter() - t0 < 1
    assert str(err.value).endswith(
        f"the PACS does not answer while searching for series: nothing listens at 127.0.0.1:{port}; "
        "check that the PACS runs and the URL"
    )
    assert "Retrying" not in caplog.text and "timeout" not in str(err.value)


def test_an_unknown_host_is_named():
    pacs = Pacs("dicomweb+http://no-such-host.invalid:8042/dicom-web", timeout=5, retries=0)
    with pytest.raises(MedsegError, match=r"the host no-such-host\.invalid is not known; check the URL"):
        pacs.find_series()
