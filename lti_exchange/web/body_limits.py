"""Bounds on request bodies: 1 MiB for JSON and forms, checked before the body is read.

Archive uploads (views marked with :func:`archive_upload`) keep their own, larger limit
(``LTI_EXCHANGE_MAX_UPLOAD_BYTES``, enforced by ``api.common.archive_body`` and the archive
reader). Every other route gets the bound here: a declared ``Content-Length`` over it is refused
before a byte of the body is read; a body without a length (chunked) is read through
:class:`BoundedInput`, which answers 413 on the first byte past the bound, so neither JSON nor a
form is ever processed cut short. JSON bodies are read by :func:`json_body` (the API) and
:func:`json_or_form` (the LTI pages), their nesting bounded by :func:`check_json_depth`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import IO, Any, TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from lti_exchange.errors import ApiError, InvalidRequest, PayloadTooLarge
from lti_exchange.read_streams import ReadStream

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32

View = TypeVar("View", bound=Callable)

# A JSON string, or (unterminated) the rest of the text from its opening quote. The possessive
# loops never give back what they took, and the tail always matches (the closing quote, else
# the end, after at most a lone backslash), so every match attempt that starts at a quote
# succeeds and each character is looked at once: linear time on any input.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
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


def incomplete_body(exc: Exception) -> ApiError:
    """The error for a body that could not be read to its end (cut off, bad chunking, or no
    bytes for the server's idle limit: a 408); the answer closes the connection."""
    if isinstance(exc, TimeoutError):
        return ApiError(
            "The upload stalled: nothing more of it arrived for too long, so the server stopped "
            "waiting. Nothing was stored; check the network connection and send it again.",
            status=408,
            code="upload_stalled",
            closes_connection=True,
        )
    return InvalidRequest(
        f"The request body could not be read to its end ({exc.__class__.__name__}: the "
        "connection was lost or the chunked encoding is malformed). Nothing was stored; send "
        "it again.",
        code="upload_incomplete",
        closes_connection=True,
    )


def _refusal(length: int | None) -> Exception:
    """The 413 for this request: the JSON error shape under ``/api/``, Werkzeug's page (which
    the LTI pages' handlers leave alone) elsewhere."""
    if request.path.startswith("/api/"):
        return too_large(length)
    size = f" ({length} bytes)" if length is not None else ""
    return RequestEntityTooLarge(
        f"The request body{size} is larger than the limit of {MAX_BODY_BYTES} bytes."
    )


class BoundedInput(ReadStream):
    """``wsgi.input`` of a body without ``Content-Length``: the first byte past ``limit`` raises
    ``refuse()`` (a 413), never a silent cut; a malformed or cut-off chunked body is a 400."""

    def __init__(self, stream: IO[bytes], limit: int, refuse: Callable[[], Exception]) -> None:
        self._stream = stream
        self._limit = limit
        self._refuse = refuse
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._pos > self._limit:
            raise self._refuse()
        data = self._read_inner(min(size, self._limit + 1 - self._pos))
        self._pos += len(data)
        if self._pos > self._limit:
            raise self._refuse()
        return data

    def _read_inner(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except (ApiError, HTTPException):
            raise
        except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors have no common base
            raise incomplete_body(exc) from exc


def _bound_request_body() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "archive_upload", False):
        return
    request.max_content_length = MAX_BODY_BYTES
    request.max_form_memory_size = MAX_BODY_BYTES
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _refusal(length)
    if length is None and "wsgi.input_terminated" in request.environ:
        # Werkzeug would cut the body at max_content_length without a word: this is the bound.
        request.environ["wsgi.input"] = BoundedInput(
            request.environ["wsgi.input"], MAX_BODY_BYTES, lambda: _refusal(None)
        )
        request.max_content_length = None


def read_bounded_body() -> bytes:
    """The whole body of a bounded route (cached); past the bound a 413, cut off a 400."""
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large(request.content_length) from exc
    except ClientDisconnected as exc:
        raise incomplete_body(exc) from exc
    except (ApiError, HTTPException):
        raise
    except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors have no common base
        raise incomplete_body(exc) from exc


def check_json_depth(text: str) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH``, in time linear in ``text``.

    Strings are cut out first (brackets inside them do not count), then the running depth of
    the brackets left is checked; no recursion, no backtracking.
    """
    outside_strings = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    brackets = outside_strings.translate(None, _NOT_BRACKETS)
    if len(brackets) <= MAX_JSON_DEPTH:
        return
    if max(accumulate(map(_STEP.__getitem__, brackets))) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; send a flatter "
            "document.",
            details={"limit": MAX_JSON_DEPTH},
        )


def _json_text(data: bytes) -> str:
    """``data`` decoded as ``json.loads`` decodes bytes: UTF-8, or UTF-16/32 told by its start."""
    try:
        return data.decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {str(exc)[:200]}. Send it as UTF-8 text."
        ) from exc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def json_body() -> dict[str, Any]:
    """The body as a JSON object ({} when there is none), bounded in size and nesting."""
    data = read_bounded_body()
    if not data:
        return {}
    if not request.is_json:
        raise InvalidRequest(
            "The request body must be a JSON object sent with Content-Type application/json."
        )
    text = _json_text(data)
    check_json_depth(text)
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {str(exc)[:200]}.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def json_or_form() -> dict[str, Any]:
    """A page's fields: the JSON object (read as :func:`json_body` reads it) when the body is
    JSON, else the form's fields (bounded by ``_bound_request_body``)."""
    if request.is_json:
        return json_body()
    return request.form.to_dict()


def install_body_limits(app: Flask) -> None:
    """Register the per-request body bound on ``app``."""
    app.before_request(_bound_request_body)
