"""A small HTTP client for the exchange API: bearer tokens, streamed transfers, clear errors.

Every request carries a fresh ``X-Request-ID``; a failure's message ends with it, so the line
the server logged for it can be found (``grep <id>`` in the service log).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import requests

from nbgrader_plugin.archive import PackError
from nbgrader_plugin.tokens import TokenEntry, TokenStore

RELAUNCH = "Launch the assignment from your LMS again (or run `lti-exchange login`)."
UPLOAD_CHUNK = 1024 * 1024
REQUEST_ID_HEADER = "X-Request-ID"


class ExchangeClientError(Exception):
    """A request failed; ``str(error)`` is a message for the user."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ):
        if request_id:
            message = (
                f"{message} (request id {request_id}: quote it to your instructor or operator)"
            )
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


def new_request_id() -> str:
    return uuid.uuid4().hex


def answered_id(response: requests.Response, sent: str) -> str:
    """The id the server logged (it echoes ours, or replaced it if it was unusable)."""
    return response.headers.get(REQUEST_ID_HEADER) or sent


class UploadSource(Protocol):
    """What ``upload`` sends: a file, or a folder packed as it is read (``TarPack``)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class _UploadBody:
    """A sized, chunked view of a file for requests, reporting progress as it is read."""

    def __init__(self, handle: UploadSource, size: int, progress: Callable[[int], object] | None):
        self._handle = handle
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(max(size, UPLOAD_CHUNK))
        if data and self._progress:
            self._progress(len(data))
        return data


def path(*segments: str) -> str:
    return "/".join(quote(str(s), safe="") for s in segments)


# What requests reads from the environment for an http(s) URL: the proxy variables for its
# scheme, ``all_proxy`` and ``no_proxy`` (either case), and the CA bundle variables. Their values
# key the settings cache below (looked up by name: scanning the whole environment costs more
# than the rest of a request's set-up).
_ENVIRONMENT_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
) + ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_SETTINGS: dict[tuple[str, tuple[str | None, ...]], tuple[dict[str, str], Any]] = {}


def _environment_key(service_url: str) -> tuple[str, tuple[str | None, ...]]:
    return service_url, tuple(os.environ.get(name) for name in _ENVIRONMENT_VARIABLES)


def environment_session(service_url: str) -> requests.Session:
    """A session with the environment's proxy and CA settings for ``service_url`` read once.

    requests would read them again on every request (``trust_env``: the proxy variables and
    ``NO_PROXY`` matched against the URL, and ``~/.netrc``), which costs CPU per request, and a
    ``~/.netrc`` entry for the exchange's host would replace the bearer token with Basic auth.
    The settings are kept per process for the URL and the variables' values, so a changed
    variable is seen by the next session.
    """
    session = requests.Session()
    key = _environment_key(service_url)
    settings = _SETTINGS.get(key)
    if settings is None:
        if len(_SETTINGS) >= 32:  # a process that keeps changing its environment
            _SETTINGS.clear()
        merged = session.merge_environment_settings(service_url, {}, None, None, None)
        settings = _SETTINGS[key] = (dict(merged["proxies"]), merged["verify"])
    session.trust_env = False
    session.proxies.update(settings[0])
    session.verify = settings[1]
    return session


class ExchangeClient:
    """Talks to one course on one service with that course's token entry."""

    def __init__(
        self,
        service_url: str,
        entry: TokenEntry,
        store: TokenStore | None = None,
        timeout: float = 300.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base = service_url.rstrip("/") + "/api/v1/"
        self.service_url = service_url.rstrip("/")
        self.entry = entry
        self.store = store
        self.timeout = timeout
        self.session = session or environment_session(self.service_url)

    # -- tokens -------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self.entry.expired and self.entry.refresh_token:
            self.refresh()
        return {"Authorization": f"Bearer {self.entry.access_token}"}

    def refresh(self) -> None:
        """Trade the refresh token for a new access token and store both."""
        request_id = new_request_id()
        try:
            response = self.session.post(
                self.base + "token/refresh",
                json={"refresh_token": self.entry.refresh_token},
                headers={REQUEST_ID_HEADER: request_id},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc, request_id) from exc
        if response.status_code != 200:
            raise ExchangeClientError(
                f"Your session for course '{self.entry.course_id}' has ended. {RELAUNCH}",
                status=response.status_code,
                code="refresh_failed",
                request_id=answered_id(response, request_id),
            )
        body = response.json()
        new = TokenEntry.from_access_token(
            body["access_token"], self.entry.service_url, body.get("refresh_token")
        )
        self.entry = new
        if self.store is not None:
            self.store.save(new)

    # -- requests -----------------------------------------------------------------------------
    def _unreachable(self, exc: Exception, request_id: str) -> ExchangeClientError:
        return ExchangeClientError(
            f"Cannot reach the exchange at {self.service_url} ({exc.__class__.__name__}). "
            "Check your network and c.Exchange.service_url, then try again.",
            request_id=request_id,
        )

    def request(
        self, method: str, url_path: str, *, stream: bool = False, retry: bool = True, **kwargs: Any
    ) -> requests.Response:
        request_id = new_request_id()
        headers = {**kwargs.pop("headers", {}), **self._headers(), REQUEST_ID_HEADER: request_id}
        try:
            response = self.session.request(
                method,
                self.base + url_path,
                headers=headers,
                stream=stream,
                timeout=kwargs.pop("timeout", self.timeout),
                **kwargs,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc, request_id) from exc
        if response.status_code < 400:
            return response
        error = self._error(response, answered_id(response, request_id))
        if retry and error.code == "token_expired" and self.entry.refresh_token:
            self.refresh()
            return self.request(method, url_path, stream=stream, retry=False, **kwargs)
        raise error

    @staticmethod
    def _error(response: requests.Response, request_id: str) -> ExchangeClientError:
        try:
            body = response.json()["error"]
            message, code = body["message"], body.get("code")
        except (ValueError, KeyError, TypeError):
            message = (
                f"The exchange answered HTTP {response.status_code} without an explanation. "
                "Try again later; if it persists, tell your instructor."
            )
            code = None
        if response.status_code == 401 and "LMS" not in message:
            message = f"{message} {RELAUNCH}"
        return ExchangeClientError(
            message, status=response.status_code, code=code, request_id=request_id
        )

    def get_json(self, url_path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", url_path, params=clean).json()

    def upload(
        self,
        method: str,
        url_path: str,
        handle: UploadSource,
        size: int,
        progress: Callable[[int], object] | None = None,
    ) -> Any:
        """Send ``size`` bytes of ``handle`` as a streamed tar body; return the JSON answer.

        ``handle`` may produce its bytes as it is read (``TarPack``: packing and sending
        overlap); if it fails half-way (``PackError``) the request is cut off and the server
        stores nothing.
        """
        start = handle.tell()
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        try:
            try:
                body = _UploadBody(handle, size, progress)
                return self.request(
                    method, url_path, data=body, headers=headers, retry=False
                ).json()
            except ExchangeClientError as exc:
                if exc.code == "token_expired" and self.entry.refresh_token:
                    self.refresh()
                    handle.seek(start)
                    body = _UploadBody(handle, size, progress)
                    return self.request(
                        method, url_path, data=body, headers=headers, retry=False
                    ).json()
                raise
        except PackError as exc:
            raise ExchangeClientError(
                f"Sending the folder failed: {exc}. Nothing was stored. Wait until no program "
                "is writing to the folder, then try again.",
                code="folder_changed",
            ) from exc

    def download(self, url_path: str, **kwargs: Any) -> requests.Response:
        """A streamed response: read ``ResponseBody(response)`` (or ``response.raw``), then close
        it."""
        response = self.request("GET", url_path, stream=True, **kwargs)
        response.raw.decode_content = True
        return response


class ResponseBody:
    """A streamed response's body as a readable stream, in as few copies as the transport
    allows: without a ``Content-Encoding`` it bypasses urllib3's decoding buffer, and a chunked
    body is read chunk by chunk (``read1``) instead of gluing chunks into fixed-size reads."""

    def __init__(self, response: requests.Response) -> None:
        raw = response.raw
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        self._raw = raw
        self._plain = encoding in ("", "identity")
        self._chunked = self._plain and bool(getattr(raw, "chunked", False))

    def read(self, size: int = -1) -> bytes:
        if not self._plain:
            return self._raw.read(size)  # urllib3 decodes it
        if self._chunked:
            return self._raw.read1(size if size and size > 0 else None, decode_content=False)
        return self._raw.read(size if size and size > 0 else None, decode_content=False)
