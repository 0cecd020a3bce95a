"""A PACS over DICOMweb: find series (QIDO-RS), fetch them instance by instance (WADO-RS), store
results (STOW-RS), with ``dicomweb-client``.

Every request has a deadline for its whole answer and a bounded number of retries
(:mod:`medseg.io.http_session`), so a PACS that does not answer, or trickles, gives a clear error
within the timeout, and one that refuses the connection at once; a series is fetched one instance
per request, so the timeout bounds an instance, not a series. Credentials (a bearer token, or a
user name and password) are read from a file or an environment variable the configuration names;
they never appear in a message, a log or a manifest, and neither does a password written into the
URL (:func:`parse_url` takes it apart at the last ``@``, and masks it from then on).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from medseg.errors import MedsegError, hide
from medseg.io.atomic import atomic_path
from medseg.io.http_session import AnswerTimeout, DeadlineSession, causes, refused

SCHEME = "dicomweb+"
MAX_PAGES = 10_000  # of one QIDO-RS search
ADVICE = {401: "the credentials", 403: "the credentials", 404: "the URL"}  # by HTTP status


@dataclass(frozen=True)
class Credentials:
    """Where a token or a password comes from: a file or an environment variable (never the value)."""

    token_file: Path | None = None
    token_env: str | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None

    def _secret(self, path: Path | None, env: str | None, what: str) -> str | None:
        """The secret from its file or variable; it is masked in every message from then on."""
        value = None
        if path is not None:
            try:
                value = Path(path).read_text().strip()
            except OSError as err:
                raise MedsegError(f"{what} file {path}: cannot be read ({err.strerror})") from None
        elif env is not None:
            value = os.environ.get(env)
            if not value:
                raise MedsegError(f"{what}: the environment variable {env} is not set")
        hide(value)
        return value

    def apply(self, session: Any) -> None:
        token = self._secret(self.token_file, self.token_env, "DICOMweb token")
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        password = self._secret(self.password_file, self.password_env, "DICOMweb password")
        if self.username and password is not None:
            session.auth = (self.username, password)


def is_dicomweb(text: str) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class Endpoint:
    """A ``dicomweb+http(s)://`` URL taken apart; only :attr:`shown` may appear in a message.

    Attributes:
        base: ``http(s)://host[:port]/path``, without user or password.
        shown: the URL as messages show it (no user, no password).
        host: the host name or address.
        port: the port (80 or 443 when the URL gives none).
        user: the user written into the URL, percent-decoded, or None.
        password: the password written into the URL, percent-decoded, or None.
    """

    base: str
    shown: str
    host: str
    port: int
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def shown(url: str) -> str:
    """``url`` without a user name or password written into it, whether or not it parses: the
    user information is everything from ``://`` to the last ``@`` (an ``@`` in a path must be
    written ``%40``).

    Example:
        >>> shown("dicomweb+http://ann:se/cr@t@pacs:8042/dicom-web")
        'dicomweb+http://pacs:8042/dicom-web'
    """
    head, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    if not sep and "@" in head:  # no "://": the scheme, then only what follows the last "@"
        head = head.split(":", 1)[0] + ":***@" + head.rsplit("@", 1)[1]
    return head + sep + rest


def parse_url(url: str, what: str = "--input") -> Endpoint:
    """Take a ``dicomweb+http(s)://[user[:password]@]host[:port]/path`` URL apart, or say what is
    wrong with it; a password in it is masked in every message from then on.

    Raises:
        MedsegError: not such a URL (the message shows it without user or password).
    """
    rest = url.partition("://")[2]
    userinfo = rest.rsplit("@", 1)[0] if "@" in rest else None
    user, password = _userinfo(userinfo)
    hide(password)
    name = shown(url)
    scheme = url.partition("://")[0].removeprefix(SCHEME).lower() if is_dicomweb(url) else ""
    expected = "expected dicomweb+http://HOST[:PORT]/PATH or dicomweb+https://..."
    if scheme not in ("http", "https") or "://" not in url:
        raise MedsegError(f"{what} {name}: {expected}")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise MedsegError(f"{what} {name}: a URL holds no spaces or control characters; percent-encode them")
    after = rest.rsplit("@", 1)[-1]
    authority, path = re.match(r"([^/?#]*)(.*)", after).groups()  # type: ignore[union-attr]
    if "?" in path or "#" in path or "?" in authority or "#" in authority:
        raise MedsegError(f"{what} {name}: the service's base URL takes no query (?) or fragment (#)")
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
        if parts.port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise MedsegError(f"{what} {name}: the port must be a number from 1 to 65535") from None
    if not host:
        raise MedsegError(f"{what} {name}: no host; {expected}")
    base = f"{scheme}://{authority}{path.rstrip('/')}"
    return Endpoint(base, name, host, port, user, password)


def _userinfo(userinfo: str | None) -> tuple[str | None, str | None]:
    """(user, password) of ``user[:password]``, percent-decoded; (None, None) without user info."""
    if userinfo is None:
        return None, None
    user, sep, password = userinfo.partition(":")
    return unquote(user), unquote(password) if sep else None


class Pacs:
    """One DICOMweb service.

    Args:
        url: ``dicomweb+http(s)://[user[:password]@]host:port/prefix``.
        credentials: where a token or password comes from.
        timeout: seconds for a request's whole answer, retries included.
        retries: further attempts of a request whose connection or reading fails (not a refused
            connection), or that gets a 502/503/504.

    Raises:
        MedsegError: a malformed URL, or a credential file or variable that cannot be read.
    """

    def __init__(
        self, url: str, credentials: Credentials | None = None, timeout: float = 30.0, retries: int = 2
    ) -> None:
        endpoint = parse_url(url)
        self.url, self.name, self.endpoint, self.timeout = url, endpoint.shown, endpoint, timeout
        self.session = DeadlineSession(timeout, retries)
        (credentials or Credentials()).apply(self.session)
        if endpoint.user is not None:  # credentials in the URL go to the session, never to a message
            self.session.auth = (endpoint.user, endpoint.password or "")
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``dicomweb-client`` on the session, made on first use (it imports pydicom)."""
        if self._client is None:
            from dicomweb_client.api import DICOMwebClient

            self._client = DICOMwebClient(url=self.endpoint.base, session=self.session, timeout=self.timeout)
            self._client.set_http_retry_params(retry=False)  # the session's bounded retries only
        return self._client

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        """Turn what ``requests`` raises into a message that names the PACS and what to do."""
        try:
            yield
        except requests.exceptions.HTTPError as err:
            code = err.response.status_code if err.response is not None else 0
            advice = ADVICE.get(code, "the URL and the credentials")
            raise MedsegError(f"{self.name}: {what} was refused (HTTP {code}); check {advice}") from None
        except requests.exceptions.RequestException as err:
            raise MedsegError(
                f"{self.name}: the PACS does not answer while {what}: {self._why(err)}"
            ) from None
        except (ValueError, KeyError, TypeError) as err:  # dicomweb-client reading a garbled answer
            raise MedsegError(
                f"{self.name}: the answer while {what} is not DICOMweb ({type(err).__name__}); check the URL"
            ) from None

    def _why(self, err: requests.exceptions.RequestException) -> str:
        """What went wrong with a request that got no answer, and what to do."""
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        if isinstance(err, AnswerTimeout):
            return (
                f"no complete answer within {self.timeout:g} s; check that it runs and is not "
                "overloaded, or raise predict.dicomweb.timeout"
            )
        if refused(err):
            return f"nothing listens at {where}; check that the PACS runs and the URL"
        if isinstance(err, requests.exceptions.SSLError):
            return f"no TLS connection to {where}; check https:// against http:// and the certificate"
        if any(isinstance(e, socket.gaierror) for e in causes(err)):
            return f"the host {self.endpoint.host} is not known; check the URL"
        return f"the connection to {where} broke ({type(err).__name__}); check that the PACS runs and the URL"

    def check(self) -> None:
        """One cheap QIDO-RS request (a study at most): the PACS answers, and takes the credentials."""
        with self._asking("searching for studies"):
            answer = self.session.get(
                f"{self.endpoint.base}/studies",
                params={"limit": "1", "includefield": "StudyInstanceUID"},
                headers={"Accept": "application/dicom+json, application/json"},
            )
            answer.raise_for_status()

    def find_series(
        self,
        studies: list[str] | None = None,
        series: list[str] | None = None,
        modality: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, str]]:
        """QIDO-RS: the series matching the filters, each as study, series and modality UIDs."""
        filters: dict[str, Any] = {}
        if modality:
            filters["Modality"] = modality
        if since:
            filters["StudyDate"] = since.replace("-", "") + "-"
        found: dict[str, dict[str, str]] = {}
        for study in studies or [None]:  # type: ignore[list-item]
            with self._asking("searching for series"):
                answer = self.client.search_for_series(
                    study_instance_uid=study,
                    search_filters=filters,
                    fields=["StudyInstanceUID", "SeriesInstanceUID", "Modality"],
                )
            for entry in answer:
                uid = _value(entry, "0020000E")
                if uid and (not series or uid in series):
                    found[uid] = {
                        "study_uid": _value(entry, "0020000D"),
                        "series_uid": uid,
                        "modality": _value(entry, "00080060"),
                    }
        return list(found.values())

    def fetch_series(self, study_uid: str, series_uid: str, folder: Path) -> int:
        """WADO-RS: the series' instances, each in a request of its own (so each has the whole
        timeout) and written to ``folder`` as it arrives; the count."""
        folder.mkdir(parents=True, exist_ok=True)
        listed = self._all(
            "listing a series' instances",
            self.client.search_for_instances,
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            fields=["SOPInstanceUID"],
        )
        uids = sorted({_value(entry, "00080018") for entry in listed} - {""})
        # as stored (transfer syntax "*"): a PACS need not transcode JPEG 2000, nor can every one
        as_stored = (("application/dicom", "*"),)
        for count, uid in enumerate(uids):
            with self._asking("retrieving a series"):
                ds = self.client.retrieve_instance(study_uid, series_uid, uid, media_types=as_stored)
            with atomic_path(folder / f"{count:05d}.dcm") as tmp:
                ds.save_as(tmp, enforce_file_format=True)
        return len(uids)

    def _all(self, what: str, search: Any, **query: Any) -> list[dict[str, Any]]:
        """Every match of a QIDO-RS search, page after page (a PACS may cap the matches it sends
        at once); a page with nothing new ends it, for a PACS that ignores ``offset``."""
        found: dict[str, dict[str, Any]] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            with self._asking(what):
                page = search(**query, offset=offset)
            by_text = {json.dumps(entry, sort_keys=True): entry for entry in page}
            if not by_text.keys() - found.keys():
                break
            found.update(by_text)
            offset += len(page)
        return list(found.values())

    def holds(self, study_uid: str, sop_uid: str) -> bool:
        """QIDO-RS: whether the PACS holds the instance ``sop_uid`` in the study ``study_uid``."""
        with self._asking("searching for an instance"):
            answer = self.client.search_for_instances(
                study_instance_uid=study_uid,
                search_filters={"SOPInstanceUID": sop_uid},
                fields=["SOPInstanceUID"],
            )
        return any(_value(entry, "00080018") == sop_uid for entry in answer)

    def store(self, path: Path) -> str:
        """STOW-RS of one file; the PACS's answer in a line."""
        import pydicom

        dataset = pydicom.dcmread(path)
        with self._asking("storing a result"):
            answer = self.client.store_instances([dataset])
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise MedsegError(f"{self.name}: the PACS refused the SEG (failure reason {reason})")
        stored = answer.get("ReferencedSOPSequence") if answer is not None else None
        return f"stored ({len(stored) if stored else 0} instance)"


def _value(entry: Any, tag: str) -> str:
    """A value of a DICOM JSON attribute (``{tag: {"Value": [...]}}``)."""
    values = entry.get(tag, {}).get("Value") or [""]
    return str(values[0])
