"""``grade_outbox.arm``: one outbox row per grade, re-armed when it exists, created when not,
in a constant number of statements."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from lti_exchange.db import Base
from lti_exchange.models import Grade, GradeOutbox
from lti_exchange.services.grade_outbox import arm

EARLIER = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_existing_rows_are_rearmed_and_missing_ones_made_in_three_statements(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")  # (no foreign keys enforced)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        grades = [
            Grade(course_id=1, assignment_name="ps1", student_id=f"s{i}", score=1, max_score=2)
            for i in range(5)
        ]
        session.add_all(grades)
        session.flush()
        ids = [g.id for g in grades]
        session.add_all(  # the first two already queued, one claimed by a worker
            [
                GradeOutbox(grade_id=ids[0], available_at=EARLIER, attempts=3),
                GradeOutbox(
                    grade_id=ids[1], available_at=EARLIER, locked_by="w1", locked_until=NOW
                ),
            ]
        )
        session.commit()
        statements: list[str] = []

        def note(*args) -> None:
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", note)
        arm(session, ids, NOW)
        event.remove(engine, "before_cursor_execute", note)
        session.commit()
        rows = {r.grade_id: r for r in session.execute(select(GradeOutbox)).scalars()}
    assert sorted(rows) == sorted(ids)  # one row each, none twice
    for row in rows.values():
        assert row.available_at == NOW and row.attempts == 0
        assert row.locked_by is None and row.locked_until is None
    assert rows[ids[0]].created_at != NOW  # re-armed, not made again
    assert rows[ids[4]].created_at == NOW
    assert len(statements) == 3, statements  # update, which exist, insert the rest
