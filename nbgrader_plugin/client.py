"""A small HTTP client for the exchange API: bearer tokens, streamed transfers, clear errors.

Every request carries a fresh ``X-Request-ID``; a failure's message ends with it, so the line
the server logged for it can be found (``grep <id>`` in the service log).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from nbgrader_plugin.archive import PackError
from nbgrader_plugin.tokens import TokenEntry, TokenStore
from nbgrader_plugin.transport import (
    NETWORK_ERRORS,
    Connection,
    Response,
    TransportError,
    is_transient,
    route_for,
)
from nbgrader_plugin.upload_limits import Upload, UploadLimits, refusal

RELAUNCH = "Launch the assignment from your LMS again (or run `lti-exchange login`)."
UPLOAD_CHUNK = 1024 * 1024
KEPT_SEND_BUFFERS = 4  # UPLOAD_CHUNK-sized buffers kept for the next uploads of this process
REQUEST_ID_HEADER = "X-Request-ID"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
ARCHIVE_MEMBERS_HEADER = "X-Archive-Members"  # what an upload declares of its archive
ARCHIVE_UNPACKED_HEADER = "X-Archive-Unpacked-Bytes"
# An upload with an idempotency key is sent again after these waits (seconds) when its answer
# is lost or says "try again": about half a minute in all, the time a database failover takes.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
# Answers after which the same upload may succeed: a proxy without its upstream (502, 504) and
# the service's own "try again later" (503: database or storage unavailable).
RETRY_STATUSES = frozenset({502, 503, 504})
UNREACHABLE = "unreachable"  # no answer came: refused, reset, cut off or timed out
CONNECTION_FAILED = "connection_failed"  # no connection, and none to expect by trying again
DOWNLOAD_CUT = "download_cut"  # an answer's body stopped half-way
# A GET (a list, a fetch) is asked again after these waits: shorter, since someone may be
# looking at a spinner (the Assignments page) while it waits.
SAFE_RETRY_DELAYS = (1.0, 2.0, 4.0)
SAFE_METHODS = frozenset({"GET", "HEAD"})

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class DownloadCut(ExchangeClientError):
    """An answer's body stopped half-way: the connection broke, or it ended before its
    ``Content-Length``. ``received`` bytes came, of ``expected`` when the answer said."""

    def __init__(self, received: int, expected: int | None, cause: str) -> None:
        of = f" of {expected}" if expected is not None else ""
        self.summary = f"the download broke off after {received}{of} bytes ({cause})"
        super().__init__(
            f"{self.summary}. Run the command again; if it keeps happening, tell your "
            "instructor or the exchange's operator.",
            code=DOWNLOAD_CUT,
        )
        self.received = received
        self.expected = expected


def is_cut(error: ExchangeClientError) -> bool:
    """Whether ``error`` is a download that broke off half-way (asking again may get it all)."""
    return error.code == DOWNLOAD_CUT


def new_request_id() -> str:
    return uuid.uuid4().hex


def answered_id(response: Response, sent: str) -> str:
    """The id the server logged (it echoes ours, or replaced it if it was unusable)."""
    return response.headers.get(REQUEST_ID_HEADER) or sent


class UploadSource(Protocol):
    """What ``upload`` sends: a file, or a folder packed as it is read (``TarPack``)."""

    def read(self, size: int = -1, /) -> bytes | bytearray: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class _SendBuffers:
    """``UPLOAD_CHUNK``-sized buffers that uploads read into, kept for the next ones. In a
    long-lived process (the Jupyter server running the Assignments tab) a new 1 MiB buffer
    per read takes fresh pages each time, which costs more than the copy on a virtual
    machine that gives freed memory back to its host."""

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(UPLOAD_CHUNK)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._free) < KEPT_SEND_BUFFERS:
                self._free.append(buffer)


_SEND_BUFFERS = _SendBuffers()


class _UploadBody:
    """A sized, chunked view of a file for the connection, reporting progress as it is read.

    A handle with ``readinto`` is read into one reused buffer: ``read`` then returns a view
    of it that is valid until the next ``read`` (the connection sends each before asking for
    the next). ``close`` gives the buffer back."""

    def __init__(self, handle: UploadSource, size: int, progress: Callable[[int], object] | None):
        self._handle = handle
        self._size = size
        self._progress = progress
        self._readinto = getattr(handle, "readinto", None)
        self._buffer: bytearray | None = None
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes | bytearray | memoryview:
        data: bytes | bytearray | memoryview
        if self._readinto is None:
            data = self._handle.read(max(size, UPLOAD_CHUNK))
        else:
            if self._buffer is None:
                self._buffer = _SEND_BUFFERS.take()
            data = memoryview(self._buffer)[: self._readinto(self._buffer) or 0]
        if data and self._progress:
            self._progress(len(data))
        self.sent += len(data)
        return data

    def rewind_progress(self) -> None:
        """Take what was sent off the progress (the upload is about to be sent again)."""
        if self.sent and self._progress:
            self._progress(-self.sent)
        self.sent = 0

    def close(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            _SEND_BUFFERS.give(buffer)


def retryable(error: ExchangeClientError) -> bool:
    """Whether sending the same request again may succeed: no answer came, or one that says
    "try again" (the service's 503, a proxy's 502 or 504)."""
    return error.code == UNREACHABLE or error.status in RETRY_STATUSES


def path(*segments: str) -> str:
    return "/".join(quote(str(s), safe="") for s in segments)


class ExchangeClient:
    """Talks to one course on one service with that course's token entry, over one kept-alive
    connection (``nbgrader_plugin.transport``); ``close`` it when done."""

    def __init__(
        self,
        service_url: str,
        entry: TokenEntry,
        store: TokenStore | None = None,
        timeout: float = 300.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        safe_retry_delays: tuple[float, ...] = SAFE_RETRY_DELAYS,
    ) -> None:
        self.service_url = service_url.rstrip("/")
        self.retry_delays = retry_delays
        self.safe_retry_delays = safe_retry_delays
        self.base = self.service_url + "/api/v1/"
        self.entry = entry
        self.store = store
        self.timeout = timeout
        self._prefix = urlsplit(self.service_url).path + "/api/v1/"
        self._connection: Connection | None = None
        self._limits: UploadLimits | None = None  # the service's, once asked (upload_limits)
        self._limits_asked = False

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens -------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self.entry.expired and self.entry.refresh_token:
            self.refresh()
        return {"Authorization": f"Bearer {self.entry.access_token}"}

    def refresh(self) -> None:
        """Trade the refresh token for a new access token and store both."""
        request_id = new_request_id()
        body = json.dumps({"refresh_token": self.entry.refresh_token}).encode()
        headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id}
        response = self._send("POST", "token/refresh", headers, body, request_id)
        with response:
            if response.status_code != 200:
                raise ExchangeClientError(
                    f"Your session for course '{self.entry.course_id}' has ended. {RELAUNCH}",
                    status=response.status_code,
                    code="refresh_failed",
                    request_id=answered_id(response, request_id),
                )
            answer = self._json(response, request_id)
        new = TokenEntry.from_access_token(
            answer["access_token"], self.entry.service_url, answer.get("refresh_token")
        )
        self.entry = new
        if self.store is not None:
            self.store.save(new)

    # -- requests -----------------------------------------------------------------------------
    def _unreachable(self, exc: TransportError, request_id: str) -> ExchangeClientError:
        return ExchangeClientError(
            f"Cannot reach the exchange at {self.service_url} ({str(exc).rstrip('.')}). "
            "Check your network and c.Exchange.service_url, then try again.",
            code=UNREACHABLE if is_transient(exc) else CONNECTION_FAILED,
            request_id=request_id,
        )

    def _send(
        self,
        method: str,
        url_path: str,
        headers: dict[str, str],
        body: bytes | _UploadBody | None,
        request_id: str,
    ) -> Response:
        try:
            if self._connection is None:
                self._connection = Connection(route_for(self.service_url), self.timeout)
            return self._connection.request(method, self._prefix + url_path, headers, body)
        except TransportError as exc:
            raise self._unreachable(exc, request_id) from exc

    def request(
        self,
        method: str,
        url_path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | _UploadBody | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
    ) -> Response:
        """Send a request; an answer of 300 or more raises ``ExchangeClientError`` (an expired
        token is refreshed and the request sent once more). Read the answer, then close it."""
        request_id = new_request_id()
        target = url_path + ("?" + urlencode(params, doseq=True) if params else "")
        all_headers = {**(headers or {}), **self._headers(), REQUEST_ID_HEADER: request_id}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        response = self._send(method, target, all_headers, body, request_id)
        if response.status_code < 300:
            return response
        with response:
            error = self._error(response, answered_id(response, request_id))
        if retry and error.code == "token_expired" and self.entry.refresh_token:
            self.refresh()
            return self.request(
                method,
                url_path,
                params=params,
                json_body=json_body,
                body=body,
                headers=headers,
                retry=False,
            )
        raise error

    def _error(self, response: Response, request_id: str) -> ExchangeClientError:
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location") or "another address"
            return ExchangeClientError(
                f"The exchange at {self.service_url} answered HTTP {status}, a redirect to "
                f"{location}. Set c.Exchange.service_url to the address the service is served "
                "at (scheme, host and port), then try again.",
                status=status,
                code="redirected",
                request_id=request_id,
            )
        try:
            error = response.json()["error"]
            message, code = error["message"], error.get("code")
        except (ValueError, KeyError, TypeError, TransportError):
            message = (
                f"The exchange answered HTTP {status} without an explanation. "
                "Try again later; if it persists, tell your instructor."
            )
            code = None
        if status == 401 and "LMS" not in message:
            message = f"{message} {RELAUNCH}"
        return ExchangeClientError(message, status=status, code=code, request_id=request_id)

    def _json(self, response: Response, request_id: str) -> Any:
        try:
            return response.json()
        except TransportError as exc:
            raise self._unreachable(exc, request_id) from exc
        except ValueError as exc:
            raise ExchangeClientError(
                f"The exchange at {self.service_url} sent an answer that is not JSON. Check "
                "c.Exchange.service_url (it must be the lti-exchange service itself), then try "
                "again.",
                status=response.status_code,
                code="not_json",
                request_id=answered_id(response, request_id),
            ) from exc

    def call(self, method: str, url_path: str, **kwargs: Any) -> Any:
        """A request whose answer is JSON: the parsed answer (a GET is asked again when its
        answer is lost or says "try again": ``SAFE_RETRY_DELAYS``)."""

        def once() -> Any:
            with self.request(method, url_path, **kwargs) as response:
                return self._json(response, answered_id(response, ""))

        return self._retrying(self._safe_delays(method), once)

    def _safe_delays(self, method: str) -> tuple[float, ...]:
        return self.safe_retry_delays if method in SAFE_METHODS else ()

    def _retrying(
        self,
        delays: tuple[float, ...],
        attempt: Callable[[], T],
        on_retry: Callable[[ExchangeClientError, float, int, int], object] | None = None,
        when: Callable[[ExchangeClientError], bool] = retryable,
    ) -> T:
        """``attempt()``, and again after each of ``delays`` while it fails with an error
        ``when`` accepts (``retryable``), on a fresh connection. Before each wait
        ``on_retry(error, delay, next_attempt, attempts)`` is told (without one, the wait is
        logged as a warning)."""
        waits, number = iter(delays), 1
        while True:
            try:
                return attempt()
            except ExchangeClientError as exc:
                delay = next(waits, None) if when(exc) else None
                if delay is None:
                    raise
                number += 1
                if on_retry is not None:
                    on_retry(exc, delay, number, len(delays) + 1)
                else:
                    log.warning("%s Asking again in %g s.", exc, delay)
                self.close()
                time.sleep(delay)

    def get_json(self, url_path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.call("GET", url_path, params=clean)

    def upload(
        self,
        method: str,
        url_path: str,
        handle: UploadSource,
        size: int,
        progress: Callable[[int], object] | None = None,
        *,
        idempotency_key: str | None = None,
        on_retry: Callable[[ExchangeClientError, float, int, int], object] | None = None,
        members: int | None = None,
        unpacked: int | None = None,
        feedback: bool = False,
    ) -> Any:
        """Send ``size`` bytes of ``handle`` as a streamed tar body; return the JSON answer.

        ``members`` and ``unpacked`` (the archive's member count and the sum of its files'
        sizes) are declared to the service, which refuses at once an archive over its limits
        instead of after receiving it; a large upload is first checked against the service's
        limits and refused here, before anything is sent (``upload_limits``; ``feedback``:
        many students' feedback, for the advice).

        ``handle`` may produce its bytes as it is read (``TarPack``: packing and sending
        overlap); if it fails half-way (``PackError``) the request is cut off and the server
        stores nothing. With an ``idempotency_key`` the upload is sent again, with the same
        key, when its answer is lost or says "try again" (``retryable``), after each of
        ``retry_delays`` in turn (``on_retry(error, delay, next_attempt, attempts)`` is told
        first): the service stores it once whichever attempt arrived.
        """
        self._refuse_over_limits(Upload(size, members, unpacked, feedback))
        start = handle.tell()
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        if idempotency_key is not None:
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        if members is not None:
            headers[ARCHIVE_MEMBERS_HEADER] = str(members)
        if unpacked is not None:
            headers[ARCHIVE_UNPACKED_HEADER] = str(unpacked)
        body = _UploadBody(handle, size, progress)

        def once() -> Any:
            if body.sent:  # an attempt before this one: send it from the start
                body.rewind_progress()
                handle.seek(start)
            return self._upload_once(method, url_path, handle, start, body, headers)

        delays = self.retry_delays if idempotency_key is not None else ()
        try:
            return self._retrying(delays, once, on_retry)
        finally:
            body.close()

    def _refuse_over_limits(self, upload: Upload) -> None:
        """Refuse ``upload`` (413, nothing sent) when it is large and over the service's limits."""
        if not upload.worth_checking():
            return
        limits = self.upload_limits()
        found = refusal(upload, limits) if limits is not None else None
        if found is not None:
            raise ExchangeClientError(found.message, status=413, code=found.code)

    def upload_limits(self) -> UploadLimits | None:
        """The service's upload limits, asked once per client. None when they cannot be had:
        from a service too old to say (remembered), or when the question gets no usable answer
        now (asked again next time); the upload then goes ahead, with its own retries, and the
        service's own refusal of one over the limits is the check."""
        if self._limits_asked:
            return self._limits
        try:
            with self.request("GET", "limits") as response:
                answer = self._json(response, answered_id(response, ""))
        except ExchangeClientError as exc:
            if exc.status == 404 and exc.code in (None, "not_found"):  # no such route
                self._limits_asked = True
                return None
            if retryable(exc) or exc.code == "not_json":
                return None
            raise  # the upload would be refused the same way (the session, the enrolment)
        self._limits = UploadLimits.from_answer(answer)
        self._limits_asked = True
        return self._limits

    def _upload_once(
        self,
        method: str,
        url_path: str,
        handle: UploadSource,
        start: int,
        body: _UploadBody,
        headers: dict[str, str],
    ) -> Any:
        """One attempt of ``upload`` (and once more with a refreshed token if it expired)."""
        try:
            try:
                return self.call(method, url_path, body=body, headers=headers, retry=False)
            except ExchangeClientError as exc:
                if exc.code == "token_expired" and self.entry.refresh_token:
                    self.refresh()
                    body.rewind_progress()
                    handle.seek(start)
                    return self.call(method, url_path, body=body, headers=headers, retry=False)
                raise
        except PackError as exc:
            self.close()  # the server is still waiting for the rest of the body
            raise ExchangeClientError(
                f"Sending the folder failed: {exc}. Nothing was stored. Wait until no program "
                "is writing to the folder, then try again.",
                code="folder_changed",
            ) from exc

    def download(self, url_path: str, *, method: str = "GET", **kwargs: Any) -> Response:
        """A streamed answer: read it (or ``ResponseBody(response)``), then close it. Asked
        again like ``call``'s GETs until the answer's head has arrived, not once it streams
        (``again_if_cut`` does that). ``method`` may be POST only for a request that changes
        nothing until its answer has gone out whole (a collection)."""
        delays = self.safe_retry_delays
        return self._retrying(delays, lambda: self.request(method, url_path, **kwargs))

    def again_if_cut(
        self,
        delays: tuple[float, ...],
        attempt: Callable[[], T],
        on_retry: Callable[[ExchangeClientError, float, int, int], object] | None = None,
    ) -> T:
        """``attempt()`` (a download and the reading of its body), and again after each of
        ``delays`` while its body breaks off half-way (``DownloadCut``), on a fresh
        connection; ``on_retry`` as in ``upload``. Other failures are not asked again here."""
        return self._retrying(delays, attempt, on_retry, when=is_cut)


class ResponseBody:
    """A streamed answer's body as a readable stream: a chunked body is read chunk by chunk
    (``read1``) instead of gluing chunks into fixed-size reads. A body that stops half-way (the
    connection breaks, or it ends before its ``Content-Length``) raises ``DownloadCut``, not a
    network exception or a quiet early end; ``received`` tells how much came."""

    def __init__(self, response: Response) -> None:
        self._raw = response.raw
        self._chunked = bool(getattr(self._raw, "chunked", False))
        length = response.headers.get("Content-Length")
        self.expected = int(length) if not self._chunked and length and length.isdigit() else None
        self.received = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        with self._cut_off():
            if self._chunked:
                data = self._raw.read1(size if size and size > 0 else -1)
            else:
                data = self._raw.read(size if size and size > 0 else None)
        self.received += len(data)
        if not data:
            self._check_complete()
        return data

    def readinto(self, buffer: Any) -> int:
        with self._cut_off():
            count = self._raw.readinto(buffer)
        self.received += count
        if not count and len(buffer):
            self._check_complete()
        return count

    def _check_complete(self) -> None:
        """At the body's end: fewer bytes than its ``Content-Length`` is a cut."""
        if self.expected is not None and self.received < self.expected:
            raise DownloadCut(self.received, self.expected, "the connection was cut")

    @contextlib.contextmanager
    def _cut_off(self) -> Iterator[None]:
        try:
            yield
        except NETWORK_ERRORS as exc:
            if isinstance(exc, http.client.IncompleteRead):  # what came of a read to the end
                self.received += len(exc.partial)
            cause = f"the connection was cut: {exc.__class__.__name__}"
            raise DownloadCut(self.received, self.expected, cause) from exc
