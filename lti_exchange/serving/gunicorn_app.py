"""Run the app under gunicorn from Python (used by ``lti-exchange serve``), and the front-door
settings shared with ``config/gunicorn.conf.py``."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

# What both ways of running gunicorn use: bounded request heads, heads read without holding a
# thread (slow clients), and an access log with the raw encoded path and no query string.
FRONT_DOOR: dict[str, Any] = {
    "worker_class": "lti_exchange.serving.head_buffering.HeadBufferingWorker",
    "limit_request_line": 8190,  # LTI login GETs carry hints and target_link_uri in the query
    "limit_request_fields": 50,
    "limit_request_field_size": 8190,
    "worker_connections": 250,  # per worker, kept-alive and still-sending clients included
    "keepalive": 5,
    "logger_class": "lti_exchange.serving.access_log.RawPathLogger",
    "accesslog": "-",
    # %(U)s is the raw, still percent-encoded path (RawPathLogger); no query, no header atoms.
    "access_log_format": "%(h)s %(m)s %(U)s %(s)s %(B)s %(M)sms",
}


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from lti_exchange import create_app

        return create_app()


def run_gunicorn(bind: str, *, workers: int = 2, threads: int = 4) -> None:
    """Serve the app on ``bind``; the service's log lines go to stderr at its log level."""
    from lti_exchange.config import load_settings
    from lti_exchange.logging_setup import configure_logging

    configure_logging(load_settings().log_level)
    _Gunicorn(
        {
            **FRONT_DOOR,
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "timeout": 300,
        }
    ).run()
