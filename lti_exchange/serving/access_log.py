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
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = raw_path(environ.get("RAW_URI", "") or getattr(req, "uri", ""))
        # Request headers and environ values (tokens, cookies) never reach the log; of the
        # answer's headers only our request id (lti_exchange/web/request_id.py) does.
        return {k: v for k, v in atoms.items() if not k.startswith("{") or k == REQUEST_ID_ATOM}
