"""Run a unit of work again when a concurrent one made it fail (unique race or deadlock)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from lti_exchange.errors import Conflict, InsufficientStorage

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 12
# "The database's disk is full", by driver: PostgreSQL's SQLSTATE, MariaDB/MySQL error numbers
# (ER_DISK_FULL, ER_RECORD_FILE_FULL), SQLite's message (SQLITE_FULL, no code in the exception).
_FULL_SQLSTATES = frozenset({"53100"})
_FULL_MYSQL_ERRORS = frozenset({1021, 1114})
_FULL_SQLITE_MESSAGE = "database or disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error says the database's disk (or its size limit) is full."""
    cause = getattr(exc, "orig", exc)
    if getattr(cause, "sqlstate", None) in _FULL_SQLSTATES:  # psycopg
        return True
    args = getattr(cause, "args", ())
    if args and isinstance(args[0], int) and args[0] in _FULL_MYSQL_ERRORS:  # pymysql
        return True
    return _FULL_SQLITE_MESSAGE in str(cause).lower()


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means the database could not be reached or dropped the
    connection (down, restarting, failing over: try again later), rather than a mistake in
    the statement (SQLite reports "no such table" as an ``OperationalError`` too)."""
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy saw a disconnect
        return True
    return getattr(exc, "statement", "") is None  # raised while connecting, before any SQL


def run_with_retry(
    session: Session,
    unit: Callable[[], T],
    *,
    what: str,
    also: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``unit`` (which commits, or flushes for its caller to commit) until it succeeds,
    rolling back between attempts; ``also`` names more exceptions that mean "run it again".

    A concurrent writer can make a transaction fail on a unique constraint (both inserted the
    same row), a deadlock (InnoDB), a serialisation failure (PostgreSQL) or a stale snapshot
    (SQLite's "database is locked"): the whole unit is then run again on fresh data. After
    ``ATTEMPTS`` tries the caller gets a 409 ``conflict`` asking to retry, never a 500.
    A full database disk is no race: it is a 507 ``insufficient_storage`` at once, like a full
    blob store (nothing was stored: the transaction is rolled back).
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return unit()
        except (IntegrityError, OperationalError) + also as exc:
            session.rollback()
            cause = getattr(exc, "orig", exc)
            if isinstance(exc, OperationalError) and is_disk_full(exc):
                log.warning("%s: the database is full: %s", what, cause)
                raise InsufficientStorage() from exc
            log.info("%s: concurrent write (attempt %d): %s", what, attempt, cause)
            if attempt == ATTEMPTS:
                raise Conflict(
                    f"Could not {what} because of concurrent changes to the same data. "
                    "Nothing was changed; try again.",
                ) from exc
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")
