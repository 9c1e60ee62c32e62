"""Run the app under gunicorn from Python (used by ``lti-exchange serve``), and the front-door
settings shared with ``config/gunicorn.conf.py``."""

from __future__ import annotations

import os
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
    # %(U)s is the raw, still percent-encoded path (RawPathLogger); no query, no header atoms
    # but our own X-Request-Id answer header (a student's failure message quotes it).
    "access_log_format": "%(h)s %(m)s %(U)s %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s",
}
# Heartbeat files on a RAM-backed file system where there is one, so a slow disk cannot stall
# the workers' event loops (each worker touches its file about once a second).
if os.path.isdir("/dev/shm"):
    FRONT_DOOR["worker_tmp_dir"] = "/dev/shm"


# LTI_EXCHANGE_LOG_FORMAT=json: no text access log (the app logs each request as JSON) and
# gunicorn's own lines in JSON too (RawPathLogger reads the variable).
JSON_LOG_OPTIONS: dict[str, Any] = {"accesslog": None}


def _child_exit(server: Any, worker: Any) -> None:
    from lti_exchange.serving.metrics_dir import mark_worker_dead

    mark_worker_dead(worker.pid)


def _on_exit(server: Any) -> None:
    from lti_exchange.serving.metrics_dir import remove_multiprocess_dir

    remove_multiprocess_dir()


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
    from lti_exchange.serving.cpu_pinning import pinning_hooks
    from lti_exchange.serving.metrics_dir import prepare_multiprocess_dir

    prepare_multiprocess_dir()  # before any worker imports prometheus_client
    settings = load_settings()
    log_format = settings.log_format.strip().lower()
    configure_logging(settings.log_level, log_format)
    _Gunicorn(
        {
            **FRONT_DOOR,
            **(JSON_LOG_OPTIONS if log_format == "json" else {}),
            **pinning_hooks(),
            "child_exit": _child_exit,
            "on_exit": _on_exit,
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "timeout": 300,
        }
    ).run()
