"""DICOMweb settings: where secrets come from, and that none is shown."""

from __future__ import annotations

import pytest
import requests

from medseg.errors import MedsegError, hide, mask_credentials
from medseg.io.dicomweb import Credentials, Pacs, parse_url, shown


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
