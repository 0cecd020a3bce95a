"""DICOMweb settings: where secrets come from, and that none is shown."""

from __future__ import annotations

import pytest
import requests

from medseg.errors import MedsegError
from medseg.io.dicomweb import Credentials, Pacs, shown


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
