"""The access log's path: as the client sent it (still percent-encoded), never the query string.

Gunicorn's ``%(U)s`` is ``PATH_INFO``, already decoded: ``/a%2e%2e/b`` and ``/a../b`` log alike,
and attack probes become unreadable. ``RawPathLogger`` makes ``%(U)s`` the raw path instead;
``lti_exchange.serving.gunicorn_app.FRONT_DOOR`` names it for both ``serve`` and
``config/gunicorn.conf.py``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from gunicorn.glogging import Logger


def raw_path(request_target: str) -> str:
    """The path of a raw request target, without query or fragment, printable ASCII only.

    >>> raw_path("/api/v1/%2e%2e/x?token=secret"), raw_path("http://h/p%20q?x=1")
    ('/api/v1/%2e%2e/x', '/p%20q')
    """
    target = request_target or ""
    if not target.startswith("/") and "://" in target:
        target = urlsplit(target).path or "/"  # absolute-form (proxies)
    path = target.split("?", 1)[0].split("#", 1)[0]
    # A log line must stay one line of plain text: escape anything else as %XX.
    return "".join(c if 0x21 <= ord(c) < 0x7F else f"%{ord(c) & 0xFF:02X}" for c in path) or "-"


REQUEST_ID_ATOM = "{x-request-id}o"


class RawPathLogger(Logger):
    """gunicorn's logger with ``%(U)s`` = the raw encoded path and no header/environ atoms;
    its own lines (workers booting, timeouts) are JSON under ``LTI_EXCHANGE_LOG_FORMAT=json``."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if os.environ.get("LTI_EXCHANGE_LOG_FORMAT", "").strip().lower() == "json":
            from lti_exchange.logging_setup import JsonFormatter

            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict[str, Any]:
        """gunicorn's plain atoms, ``%(U)s`` raw, and of all header/environ atoms only our request
        id: built directly, without gunicorn's dicts of every header and environ entry (which
        were thrown away again) - this runs once per request."""
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        seconds, micros = request_time.seconds, request_time.microseconds
        method = environ.get("REQUEST_METHOD")
        atoms: dict[str, Any] = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "l": "-",
            "u": self._get_user(environ) or "-",
            "t": self.now(),
            "r": f"{method} {environ.get('RAW_URI')} {environ.get('SERVER_PROTOCOL')}",
            "s": status,
            "m": method,
            "U": raw_path(environ.get("RAW_URI", "") or getattr(req, "uri", "")),
            "q": environ.get("QUERY_STRING"),
            "H": environ.get("SERVER_PROTOCOL"),
            "b": str(sent) if sent is not None else "-",
            "B": sent,
            "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "T": seconds,
            "D": seconds * 1_000_000 + micros,
            "M": seconds * 1000 + micros // 1000,
            "L": f"{seconds}.{micros:06d}",
            "p": f"<{os.getpid()}>",
        }
        # Request headers and environ values (tokens, cookies) never reach the log; of the
        # answer's headers only our request id (lti_exchange/web/request_id.py) does.
        headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
        for name, value in headers:
            if name.lower() == "x-request-id":
                atoms[REQUEST_ID_ATOM] = value
        return atoms
