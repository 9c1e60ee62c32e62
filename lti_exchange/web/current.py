"""The one accessor for the app's objects, and the request's database session."""

from __future__ import annotations

import contextlib
from typing import Any

from flask import current_app, g, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lti_exchange.app_objects import AppObjects

EXTENSION = "lti_exchange"


def app_objects() -> AppObjects:
    """The current app's shared objects (engine, storage, key rings, settings)."""
    return current_app.extensions[EXTENSION]


def get_session() -> Session:
    """The request's session, created on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = app_objects().session_factory()
    return g.db_session


def rollback_request_session() -> None:
    """Roll back and close the request's session after a failure (a database that is gone
    cannot roll back: the error being answered says so already)."""
    session = g.pop("db_session", None) if has_app_context() else None
    if session is not None:
        with contextlib.suppress(Exception):
            session.rollback()
        with contextlib.suppress(Exception):
            session.close()


def close_request_session(_exc: BaseException | None = None) -> None:
    """Teardown: close the request's session (closing rolls back whatever was not committed
    and returns the connection to the pool)."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def install_query_counter(engine: Engine) -> None:
    """Count statements per request on ``g`` (exposed as ``X-Query-Count`` when enabled)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        if has_app_context():
            g.query_count = g.get("query_count", 0) + 1
