"""Logging for a process, and the id of the request being served (no Flask).

Each module logs through ``logging.getLogger(__name__)``; the process entry points (``serve``,
``config/gunicorn.conf.py``, the worker) call :func:`configure_logging` once. Lines about a
request name its id (:func:`current_request_id`), the one sent back in ``X-Request-Id``.

``LTI_EXCHANGE_LOG_FORMAT=json`` makes every line one JSON object (:class:`JsonFormatter`):
``time``, ``level``, ``logger``, ``message``, ``request_id`` (inside a request), ``exception``
(when there is one) and the fields a line adds with ``extra={"fields": {...}}`` (the per-request
line of ``lti_exchange/web/metrics.py``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REQUEST_ID: ContextVar[str] = ContextVar("lti_exchange_request_id", default="-")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never multi-line (tracebacks are a string field)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id != "-":
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def check_log_format(log_format: str) -> str:
    """``text`` or ``json`` (any case), else a ValueError naming the setting."""
    value = (log_format or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"LTI_EXCHANGE_LOG_FORMAT must be text or json, got {log_format!r}")
    return value


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Send every logger's lines to stderr at ``level`` as text or JSON (once per process)."""
    if check_log_format(log_format) == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
    else:
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
