"""Run a unit of work again when a concurrent one made it fail (unique race or deadlock)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from lti_exchange.errors import Conflict

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 12


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
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return unit()
        except (IntegrityError, OperationalError) + also as exc:
            session.rollback()
            cause = getattr(exc, "orig", exc)
            log.info("%s: concurrent write (attempt %d): %s", what, attempt, cause)
            if attempt == ATTEMPTS:
                raise Conflict(
                    f"Could not {what} because of concurrent changes to the same data. "
                    "Nothing was changed; try again.",
                ) from exc
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")
