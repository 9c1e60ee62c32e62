"""Queue a grade for the worker: its one outbox row, armed and unlocked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from lti_exchange.models import Grade, GradeOutbox


def arm(session: Session, grade: Grade, now: datetime) -> None:
    """(Re)arm ``grade``'s outbox row (created if missing) so the worker sends its newest score
    from ``now`` on: no attempts counted, no worker's claim."""
    changed = session.execute(
        update(GradeOutbox)
        .where(GradeOutbox.grade_id == grade.id)
        .values(available_at=now, attempts=0, locked_by=None, locked_until=None)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]  # DML gives a CursorResult
        session.add(GradeOutbox(grade_id=grade.id, available_at=now, created_at=now))
