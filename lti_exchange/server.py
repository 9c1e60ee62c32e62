"""Run the app under gunicorn from Python (used by ``lti-exchange serve``)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


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
    _Gunicorn(
        {
            "bind": bind,
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": 300,
            "accesslog": "-",
            "access_log_format": "%(h)s %(m)s %(U)s %(s)s %(B)s %(M)sms",
        }
    ).run()
