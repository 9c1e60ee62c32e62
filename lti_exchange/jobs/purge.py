"""Delete what the database no longer needs: expired key-value rows and old refresh tokens.

Each deletion runs in batches of ``BATCH`` rows, one short transaction each (select the keys,
then delete those keys if still expired), so no pass holds a lock on a large part of a table;
one pass deletes at most ``MAX_BATCHES`` batches and the next pass goes on.

Refresh tokens: a row is deleted once it has been expired for ``REFRESH_TOKEN_GRACE``, whatever
its state (unused, used or revoked). A *used* token is not deleted earlier on purpose: presenting
a used token again is how a copied token is noticed, and that check ends every session of the
enrolment (``tokens/refresh.py``). Deleted while it would still be valid, its replay would be a
plain "unknown token" and the thief's rotated token would live on. The grace past expiry keeps
that detection for a client that comes back a little late, and keeps the "your session has
expired" answer (instead of "unknown refresh token") for a week. The table is thus bounded by
the refreshes of one token lifetime plus a week.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from lti_exchange.models import KeyValue, RefreshToken
from lti_exchange.models.types import utcnow

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 40  # at most 20,000 rows of a table per pass
REFRESH_TOKEN_GRACE = timedelta(days=7)
PURGE_INTERVAL = 600.0


def delete_in_batches(
    sessions: sessionmaker[Session],
    key: InstrumentedAttribute[Any],
    condition: ColumnElement[bool],
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Delete the rows of ``key``'s table that meet ``condition``, ``batch`` rows per
    transaction (in ``key`` order), at most ``max_batches`` times; how many were deleted."""
    table = key.class_
    deleted = 0
    for _ in range(max_batches):
        with sessions() as session:
            keys = session.execute(select(key).where(condition).order_by(key).limit(batch))
            chosen = list(keys.scalars())
            if not chosen:
                break
            result = cast(
                "CursorResult[Any]",
                session.execute(
                    delete(table)
                    .where(key.in_(chosen), condition)
                    .execution_options(synchronize_session=False)
                ),
            )
            session.commit()
        deleted += result.rowcount
        if len(chosen) < batch:
            break
    return deleted


def purge_key_values(sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Delete expired ``kv_store`` rows (OIDC state, nonces, launch data, caches, locks)."""
    cutoff = now or utcnow()
    removed = delete_in_batches(sessions, KeyValue.key, KeyValue.expires_at <= cutoff)
    log.log(
        logging.INFO if removed else logging.DEBUG, "purged %d expired key-value row(s)", removed
    )
    return removed


def purge_refresh_tokens(
    sessions: sessionmaker[Session],
    now: datetime | None = None,
    grace: timedelta = REFRESH_TOKEN_GRACE,
) -> int:
    """Delete refresh tokens expired for longer than ``grace`` (see the module docstring).

    In id order: tokens expire in about the order they were issued, so the oldest ids are the
    ones to go and each batch stops early on the primary key (``expires_at`` has no index).
    """
    cutoff = (now or utcnow()) - grace
    removed = delete_in_batches(sessions, RefreshToken.id, RefreshToken.expires_at <= cutoff)
    log.log(
        logging.INFO if removed else logging.DEBUG,
        "purged %d refresh token(s) expired before %s",
        removed,
        cutoff.isoformat(timespec="seconds"),
    )
    return removed
