"""Helpers shared by the API views: services for this request, auth, streaming responses."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from flask import Response, current_app, request, stream_with_context
from werkzeug.wsgi import LimitedStream

from lti_exchange.auth import Caller, authorise_course
from lti_exchange.db import get_session
from lti_exchange.errors import InvalidRequest
from lti_exchange.models import COURSE_ROLES, STAFF_ROLES
from lti_exchange.services.context import ServiceContext
from lti_exchange.state import ExchangeState

ANY_ROLE = COURSE_ROLES
STAFF = STAFF_ROLES
ARCHIVE_TYPES = ("application/x-tar", "application/gzip", "application/octet-stream")


def state() -> ExchangeState:
    return current_app.extensions["lti_exchange"]


def context() -> ServiceContext:
    st = state()
    return ServiceContext(session=get_session(), storage=st.storage, limits=st.limits)


def caller_for(course_id: str, roles: Iterable[str]) -> Caller:
    return authorise_course(get_session(), course_id, roles)


def archive_body() -> BinaryIO:
    """The request body as a stream, after checking it is declared as a tar archive."""
    mimetype = request.mimetype or ""
    if mimetype not in ARCHIVE_TYPES:
        raise InvalidRequest(
            f"Send the archive as the request body with Content-Type application/x-tar or "
            f"application/gzip (got {mimetype or 'none'!r}).",
            code="unsupported_media_type",
            status=415,
        )
    limit = state().settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        from lti_exchange.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"The upload ({request.content_length} bytes) is larger than the limit of {limit} "
            "bytes. Remove large files from the folder, or ask your operator to raise "
            "LTI_EXCHANGE_MAX_UPLOAD_BYTES.",
            details={"limit": limit},
        )
    if request.content_length is not None:
        return _DeclaredLengthStream(request.stream, request.content_length)
    return request.stream  # type: ignore[return-value]


class _DeclaredLengthStream(LimitedStream):
    """The body cut to its ``Content-Length``; a body that ends early is an error.

    The server hands over a short body silently when the client hangs up, and a tar cut at a
    member boundary still parses, so without this a cut-off upload would be stored as complete.
    """

    def on_disconnect(self, error: Exception | None = None) -> None:
        raise InvalidRequest(
            f"The upload ended after {self._pos} of its {self.limit} bytes (connection lost?). "
            "Nothing was stored; send it again.",
            code="upload_incomplete",
        )


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if request.content_length and body is None:
        raise InvalidRequest("The request body must be a JSON object.")
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def blob_response(handle: BinaryIO, size: int, sha256: str, **headers: str) -> Response:
    """Stream a stored blob with its length and checksum (sendfile where the server can)."""
    from werkzeug.wsgi import wrap_file

    magic = _peek(handle, 2)
    response = Response(
        wrap_file(request.environ, handle, buffer_size=1024 * 1024),
        mimetype="application/gzip" if magic == b"\x1f\x8b" else "application/x-tar",
        direct_passthrough=True,
    )
    response.headers["Content-Length"] = str(size)
    response.headers["X-Content-SHA256"] = sha256
    response.headers["ETag"] = f'"{sha256}"'
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


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
