"""A WSGI app that does only what any exchange must: the floor under ``bench/stack_floor.py``
and under the burst of ``bench/transfers.py``.

Served by gunicorn with the service's own front door (worker class, limits, access log), so the
difference between this app and the service is the service's own work (Flask, authorisation,
SQL, the archive check). ``FLOOR_DIR`` names a folder with ``blob.bin`` (sent by ``GET /file``)
and room for the blobs ``POST /store`` keeps; ``GET /flask`` answers through a bare Flask app.

It also answers the three API routes the burst's classes use, in the service's shapes, so that
nbgrader's classes with the plugin can run the burst against it: ``POST …/releases`` and
``POST …/submissions`` keep the body as a durable blob (the service's own storage code: SHA-256,
``O_DIRECT``, fsync, rename), ``GET …/archive`` sends the latest release with ``sendfile``.
No token is checked, no row is written, no archive is looked into: the student's name is read
from the token's claims without checking its signature. ``FLOOR_NOTEBOOKS`` (comma-separated)
names the release's notebooks for the answers.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify

from lti_exchange.storage.filesystem import FilesystemStorage
from lti_exchange.timestamps import format_timestamp

FLOOR_DIR = os.environ.get("FLOOR_DIR", ".")
NOTEBOOKS = [name for name in os.environ.get("FLOOR_NOTEBOOKS", "").split(",") if name]
RELEASE_POINTER = os.path.join(FLOOR_DIR, "release.json")  # the latest release's key and SHA-256
_STORAGE = FilesystemStorage(os.path.join(FLOOR_DIR, "store"))
_ANSWER = b'{"ok": true}'
_BUFFERS = threading.local()  # one reused read buffer per worker thread


def _buffer() -> memoryview:
    buffer: memoryview | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = _BUFFERS.buffer = memoryview(bytearray(1024 * 1024))
    return buffer


def _read_body(environ: dict[str, Any], sink: Callable[[memoryview], None] | None) -> None:
    """Read the request body into the reused buffer (``readinto``, as the service reads)."""
    left = int(environ.get("CONTENT_LENGTH") or 0)
    body, buffer = environ["wsgi.input"], _buffer()
    while left > 0:
        got = body.readinto(buffer[: min(left, len(buffer))])
        if not got:
            break
        if sink is not None:
            sink(buffer[:got])
        left -= got


def _store(environ: dict[str, Any], kind: str = "submissions") -> tuple[str, str]:
    """The body kept as a durable blob of ``kind`` (as the service keeps it); key and SHA-256."""
    writer = _STORAGE.writer(kind)
    _read_body(environ, writer.write)
    stored = writer.commit()
    return stored.key, stored.sha256


def _json(start_response: Callable[..., Any], status: str, answer: Any) -> list[bytes]:
    payload = json.dumps(answer).encode() if not isinstance(answer, bytes) else answer
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(status, headers)
    return [payload]


def _username(environ: dict[str, Any]) -> str:
    """The ``username`` claim of the bearer token, unchecked (the floor checks no token)."""
    token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
    claims = token.split(".")[1] if token.count(".") == 2 else ""
    try:
        return str(
            json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["username"]
        )
    except (ValueError, KeyError, TypeError):
        return "unknown"


def _release(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    key, sha256 = _store(environ, "releases")
    partial = f"{RELEASE_POINTER}.{uuid.uuid4().hex}.partial"  # one per release, any thread
    with open(partial, "w") as pointer:
        json.dump({"key": key, "sha256": sha256}, pointer)
    os.replace(partial, RELEASE_POINTER)
    return _json(start_response, "201 CREATED", {"version": 1, "notebooks": NOTEBOOKS})


def _archive(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with open(RELEASE_POINTER) as pointer:
        release = json.load(pointer)
    handle = open(_STORAGE.path_for(release["key"]), "rb")  # noqa: SIM115 - the server closes it
    size = os.fstat(handle.fileno()).st_size
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/x-tar"),
            ("Content-Length", str(size)),
            ("X-Content-SHA256", release["sha256"]),
            ("Cache-Control", "no-store"),
        ],
    )
    return environ["wsgi.file_wrapper"](handle, 1024 * 1024)


def _submission(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _store(environ)
    answer = {
        "timestamp": format_timestamp(datetime.now(UTC)),
        "student_id": _username(environ),
        "release_notebooks": NOTEBOOKS,
    }
    return _json(start_response, "201 CREATED", answer)


flask_app = Flask(__name__)


@flask_app.get("/flask")
def flask_answer() -> Any:
    """The same small answer through Flask (routing, request context, ``jsonify``)."""
    return jsonify(ok=True)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
    if path.startswith("/api/v1/courses/"):
        if method == "GET" and path.endswith("/archive"):
            return _archive(environ, start_response)
        if method == "POST" and path.endswith("/submissions"):
            return _submission(environ, start_response)
        if method == "POST" and path.endswith("/releases"):
            return _release(environ, start_response)
        _read_body(environ, None)
        return _json(
            start_response,
            "404 NOT FOUND",
            {"error": {"status": 404, "code": "not_found", "message": "not in the floor app"}},
        )
    if path == "/flask":
        return flask_app(environ, start_response)
    if path == "/file":
        handle = open(os.path.join(FLOOR_DIR, "blob.bin"), "rb")  # noqa: SIM115
        size = os.fstat(handle.fileno()).st_size
        headers = [("Content-Type", "application/x-tar"), ("Content-Length", str(size))]
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](handle, 1024 * 1024)
    if path == "/store":  # the service's own durable blob write: SHA-256, O_DIRECT, fsync
        _store(environ)
    else:
        _read_body(environ, None)
    return _json(start_response, "200 OK", _ANSWER)
