"""Helpers shared by the API views: services for this request, bodies, streaming responses."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from flask import Response, request, stream_with_context
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream, wrap_file

from lti_exchange.app_objects import AppObjects
from lti_exchange.archives.reader import readinto_of
from lti_exchange.archives.upload import refuse_declared
from lti_exchange.errors import ApiError, InvalidRequest
from lti_exchange.models import COURSE_ROLES, STAFF_ROLES
from lti_exchange.services.context import ServiceContext
from lti_exchange.web.body_limits import incomplete_body as _incomplete_body
from lti_exchange.web.body_limits import json_body as json_body  # shared with the LTI pages
from lti_exchange.web.current import app_objects, get_session

ANY_ROLE = COURSE_ROLES
STAFF = STAFF_ROLES
ARCHIVE_TYPES = ("application/x-tar", "application/gzip", "application/octet-stream")
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDEMPOTENCY_KEY_ENVIRON = "HTTP_" + IDEMPOTENCY_KEY_HEADER.upper().replace("-", "_")
# What an uploader may declare of its archive, so that one over the limits is refused at once.
ARCHIVE_MEMBERS_HEADER = "X-Archive-Members"
ARCHIVE_UNPACKED_HEADER = "X-Archive-Unpacked-Bytes"
_DECLARED_DIGITS = 15  # no folder holds 10**15 files or bytes to send
_DECLARED = {  # header: (its WSGI environ key, what it counts)
    header: ("HTTP_" + header.upper().replace("-", "_"), what)
    for header, what in (
        (ARCHIVE_MEMBERS_HEADER, "files and folders"),
        (ARCHIVE_UNPACKED_HEADER, "bytes"),
    )
}
BLOB_BUFFER = 1024 * 1024  # bytes per read where the server has no sendfile


def context() -> ServiceContext:
    """The services' context for this request: its session, the blob store and the limits."""
    objects = app_objects()
    return ServiceContext(session=get_session(), storage=objects.storage, limits=objects.limits)


def archive_body(*, feedback: bool = False) -> BinaryIO:
    """The request body as a stream, after checking it is declared as a tar archive
    (``feedback``: many students' feedback, for the advice of a refusal)."""
    return upload_stream(request.environ, app_objects(), feedback=feedback)


def upload_stream(
    environ: dict[str, Any], objects: AppObjects, *, feedback: bool = False
) -> BinaryIO:
    """``archive_body`` from the WSGI environ (``web.hot_routes`` has no Flask request): the
    declared type and length checked (415, 413), what the sender declared of the archive (400,
    413), room in the store (507), then the body."""
    mimetype = parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()
    content_length = get_content_length(environ)
    if mimetype not in ARCHIVE_TYPES:
        raise InvalidRequest(
            f"Send the archive as the request body with Content-Type application/x-tar or "
            f"application/gzip (got {mimetype or 'none'!r}).",
            code="unsupported_media_type",
            status=415,
        )
    refuse_declared(
        objects.limits,
        declared_count(environ, ARCHIVE_MEMBERS_HEADER),
        declared_count(environ, ARCHIVE_UNPACKED_HEADER),
        size=content_length,
        feedback=feedback,
    )
    objects.storage.ensure_room(content_length or 0)  # 507 before reading a byte
    if content_length is not None:
        return _DeclaredLengthStream(environ["wsgi.input"], content_length)  # type: ignore[return-value]  # read like a file
    # As Flask's request.stream: archive uploads have no max_content_length (body_limits).
    return _ChunkedStream(get_input_stream(environ, max_content_length=None))  # type: ignore[return-value]


def declared_count(environ: dict[str, Any], header: str) -> int | None:
    """The whole number the request declares in ``header`` (``ARCHIVE_MEMBERS_HEADER`` or
    ``ARCHIVE_UNPACKED_HEADER``), if it sent one; anything else (signs, spaces, exponents, more
    than 15 digits) is refused (400) before the body is read."""
    key, what = _DECLARED[header]
    value = environ.get(key)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= _DECLARED_DIGITS):
        raise InvalidRequest(
            f"The {header} header must be the archive's number of {what}, in digits (at most "
            f"{_DECLARED_DIGITS}). Nothing was stored; send it again with the right number, "
            "or without the header.",
            code="invalid_archive_header",
            details={"header": header},
            closes_connection=True,
        )
    return int(value)


class _ChunkedStream(io.RawIOBase):
    """A body without ``Content-Length``: a malformed or cut-off chunked body is a 400."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors have no common base
            raise _incomplete_body(exc) from exc

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _DeclaredLengthStream(io.RawIOBase):
    """The body cut to its ``Content-Length``; a body that ends early is an error.

    The server hands over a short body silently when the client hangs up, and a tar cut at a
    member boundary still parses, so without this a cut-off upload would be stored as complete.
    ``readinto`` reads straight into the caller's buffer where the server's input allows it
    (``serving.fast_input``), never past the declared length.
    """

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self._readinto = readinto_of(stream)
        self.limit = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.limit - self._pos
        if left <= 0:
            return 0
        with memoryview(buffer) as whole, whole[:left] as view:
            try:
                if self._readinto is not None:
                    got = self._readinto(view) or 0
                else:
                    data = self._stream.read(len(view))
                    got = len(data)
                    view[:got] = data
            except (ApiError, HTTPException):
                raise
            except Exception as exc:  # noqa: BLE001 - gunicorn's errors have no common base
                raise _incomplete_body(exc) from exc
        if not got:
            raise InvalidRequest(
                f"The upload ended after {self._pos} of its {self.limit} bytes (connection "
                "lost?). Nothing was stored; send it again.",
                code="upload_incomplete",
                closes_connection=True,
            )
        self._pos += got
        return got


def blob_response(handle: BinaryIO, size: int, sha256: str, **headers: str) -> Response:
    """Stream a stored blob with its length and checksum (sendfile where the server can)."""
    return Response(
        blob_body(request.environ, handle),
        headers=blob_headers(handle, size, sha256, **headers),
        direct_passthrough=True,
    )


def blob_body(environ: dict[str, Any], handle: BinaryIO) -> Any:
    """The blob as a WSGI body: the server's ``wsgi.file_wrapper`` (sendfile) where it has one."""
    return wrap_file(environ, handle, buffer_size=BLOB_BUFFER)


def blob_headers(handle: BinaryIO, size: int, sha256: str, **headers: str) -> list[tuple[str, str]]:
    """A stored blob's answer headers: its type (gzip or tar, by its first bytes), length and
    checksum, no caching; ``headers`` add to them (``X_Release_Version``: ``X-Release-Version``).
    """
    kind = "application/gzip" if _peek(handle, 2) == b"\x1f\x8b" else "application/x-tar"
    return [
        ("Content-Type", kind),
        ("Content-Length", str(size)),
        ("X-Content-SHA256", sha256),
        ("ETag", f'"{sha256}"'),
        ("Cache-Control", "no-store"),
        *((name.replace("_", "-"), value) for name, value in headers.items()),
    ]


def _peek(handle: BinaryIO, size: int) -> bytes:
    """The first bytes of ``handle`` without moving it (sendfile reads from the fd offset)."""
    try:
        return os.pread(handle.fileno(), size, 0)
    except (AttributeError, OSError, io.UnsupportedOperation):
        data = handle.read(size)
        handle.seek(0)
        return data


def tar_stream_response(chunks: Iterator[bytes]) -> Response:
    response = Response(stream_with_context(chunks), mimetype="application/x-tar")
    response.headers["Cache-Control"] = "no-store"
    return response


def bool_arg(name: str) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise InvalidRequest(f"Query parameter {name!r} must be true or false.")
    return value in ("1", "true", "yes")


def idempotency_key(environ: dict[str, Any]) -> str | None:
    """The request's ``Idempotency-Key`` (1-64 letters, digits, ``-`` or ``_``), if it sent one:
    a client that sends an upload again after losing the answer sends the same key. Any other
    value is refused (400)."""
    value = environ.get(_IDEMPOTENCY_KEY_ENVIRON)
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidRequest(
            f"The {IDEMPOTENCY_KEY_HEADER} header must be 1 to 64 letters, digits, '-' or '_' "
            "(a random UUID's hex digits, say). Nothing was stored; send it again with such a key.",
            code="invalid_idempotency_key",
        )
    return value
