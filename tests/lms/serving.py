"""A WSGI app served on a free loopback port from a daemon thread: the simulated platforms'
(``tests/lms/platform.py``, ``tests/interop/library_platform.py``) start and stop."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

STOP_POLL = 0.05  # seconds; ``stop()`` waits up to this long (the default 0.5 s, per test)


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the tests look at what the platform recorded instead)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class BackgroundServer:
    """``start()`` serves ``app`` at ``url`` (threaded), ``stop()`` shuts it down."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name
        self.url = ""
        self._server: BaseWSGIServer | None = None

    def start(self) -> str:
        self._server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL},
            name=self.name,
            daemon=True,
        ).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
