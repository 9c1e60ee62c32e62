"""Logging for a process, and the id of the request being served (no Flask).

Each module logs through ``logging.getLogger(__name__)``; the process entry points (``serve``,
``config/gunicorn.conf.py``, the worker) call :func:`configure_logging` once. Lines about a
request name its id (:func:`current_request_id`), the one sent back in ``X-Request-Id``.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REQUEST_ID: ContextVar[str] = ContextVar("lti_exchange_request_id", default="-")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def configure_logging(level: str = "info") -> None:
    """Send every logger's lines to stderr at ``level`` (once per process)."""
    logging.basicConfig(level=level.upper(), format=FORMAT)


def request_id_from(incoming: str | None) -> str:
    """The client's ``X-Request-Id`` when it is short and plain, else a fresh one."""
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def set_request_id(value: str) -> None:
    _REQUEST_ID.set(value)


def current_request_id() -> str:
    """The id of the request this thread is serving (``-`` outside a request)."""
    return _REQUEST_ID.get()
