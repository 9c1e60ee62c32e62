"""Bounds on request bodies: 1 MiB for JSON and forms, checked before the body is read.

Archive uploads (views marked with :func:`archive_upload`) keep their own, larger limit
(``LTI_EXCHANGE_MAX_UPLOAD_BYTES``, enforced by ``api.common.archive_body`` and the archive
reader). Every other route gets ``request.max_content_length``: a declared ``Content-Length``
over the bound is refused here, before a byte of the body is read. A chunked body without a
length is read at most one byte past the bound: JSON by :func:`read_bounded_body` (413), forms
by Werkzeug (which cuts them at the bound). JSON nesting is bounded by :func:`check_json_depth`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import accumulate
from typing import TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from lti_exchange.errors import InvalidRequest, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32

View = TypeVar("View", bound=Callable)

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def archive_upload(view: View) -> View:
    """Mark ``view`` as an archive upload: it streams its body under the upload limit."""
    view.archive_upload = True  # type: ignore[attr-defined]
    return view


def too_large(length: int | None) -> PayloadTooLarge:
    """The error for a JSON or form body over ``MAX_BODY_BYTES``."""
    size = f" ({length} bytes)" if length is not None else ""
    return PayloadTooLarge(
        f"The request body{size} is larger than the limit of {MAX_BODY_BYTES} bytes for this "
        "endpoint. Send a smaller body (archives go to the upload endpoints).",
        details={"limit": MAX_BODY_BYTES},
    )


def _bound_request_body() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "archive_upload", False):
        return
    request.max_content_length = MAX_BODY_BYTES
    request.max_form_memory_size = MAX_BODY_BYTES
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        if request.path.startswith("/api/"):
            raise too_large(length)
        raise RequestEntityTooLarge(
            f"The request body ({length} bytes) is larger than the limit of {MAX_BODY_BYTES} bytes."
        )


def read_bounded_body() -> bytes:
    """The whole body of a bounded route; a chunked body over the bound is a 413.

    Werkzeug cuts a chunked body at ``max_content_length`` without a word (its ``readall``
    stops at the limit), so a body without ``Content-Length`` is read here from the server's
    stream, one byte past the bound at most.
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=True)
    stream = request.environ["wsgi.input"]
    data = bytearray()
    while len(data) <= MAX_BODY_BYTES:
        chunk = stream.read(MAX_BODY_BYTES + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > MAX_BODY_BYTES:
        raise too_large(None)
    return bytes(data)


def check_json_depth(data: bytes) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` (linear scan, no recursion)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return
    if max(accumulate(_STEP[b] for b in brackets)) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; send a flatter "
            "document.",
            details={"limit": MAX_JSON_DEPTH},
        )


def install_body_limits(app: Flask) -> None:
    """Register the per-request body bound on ``app``."""
    app.before_request(_bound_request_body)
