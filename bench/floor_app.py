"""A WSGI app that does only what any exchange must: the floor under ``bench/stack_floor.py``.

Served by gunicorn with the service's own front door (worker class, limits, access log), so the
difference between this app and the service is the service's own work (Flask, authorisation,
SQL, the archive check). ``FLOOR_DIR`` names a folder with ``blob.bin`` (sent by ``GET /file``)
and room for the blobs ``POST /store`` keeps; ``GET /flask`` answers through a bare Flask app.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify

from lti_exchange.storage.filesystem import FilesystemStorage

FLOOR_DIR = os.environ.get("FLOOR_DIR", ".")
_BUFFER = memoryview(bytearray(1024 * 1024))  # one reused read buffer (requests run one by one)
_STORAGE = FilesystemStorage(os.path.join(FLOOR_DIR, "store"))
_ANSWER = b'{"ok": true}'


def _read_body(environ: dict[str, Any], sink: Callable[[memoryview], None] | None) -> None:
    """Read the request body into the reused buffer (``readinto``, as the service reads)."""
    left = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"]
    while left > 0:
        got = body.readinto(_BUFFER[: min(left, len(_BUFFER))])
        if not got:
            break
        if sink is not None:
            sink(_BUFFER[:got])
        left -= got


flask_app = Flask(__name__)


@flask_app.get("/flask")
def flask_answer() -> Any:
    """The same small answer through Flask (routing, request context, ``jsonify``)."""
    return jsonify(ok=True)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/flask":
        return flask_app(environ, start_response)
    if path == "/file":
        handle = open(os.path.join(FLOOR_DIR, "blob.bin"), "rb")  # noqa: SIM115
        size = os.fstat(handle.fileno()).st_size
        headers = [("Content-Type", "application/x-tar"), ("Content-Length", str(size))]
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](handle, 1024 * 1024)
    if path == "/store":  # the service's own durable blob write: SHA-256, O_DIRECT, fsync
        writer = _STORAGE.writer("submissions")
        _read_body(environ, writer.write)
        writer.commit()
    else:
        _read_body(environ, None)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(_ANSWER)))]
    start_response("200 OK", headers)
    return [_ANSWER]
