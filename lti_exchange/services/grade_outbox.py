"""Queue grades for the worker: each grade's one outbox row, armed and unlocked."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from lti_exchange.models import GradeOutbox


def arm(session: Session, grade_ids: Collection[int], now: datetime) -> None:
    """(Re)arm the outbox rows of ``grade_ids`` (rows already in the database; missing outbox
    rows are created) so the worker sends their newest scores from ``now`` on: no attempts
    counted, no worker's claim. At most three statements, whatever the number of grades."""
    if not grade_ids:
        return
    changed = session.execute(
        update(GradeOutbox)
        .where(GradeOutbox.grade_id.in_(grade_ids))
        .values(available_at=now, attempts=0, locked_by=None, locked_until=None)
    )
    found = changed.rowcount  # type: ignore[attr-defined]  # DML gives a CursorResult
    if found == len(grade_ids):
        return
    armed = set()
    if found:
        armed = set(
            session.execute(
                select(GradeOutbox.grade_id).where(GradeOutbox.grade_id.in_(grade_ids))
            ).scalars()
        )
    session.execute(
        insert(GradeOutbox),
        [
            {"grade_id": grade_id, "available_at": now, "created_at": now}
            for grade_id in grade_ids
            if grade_id not in armed
        ],
    )
