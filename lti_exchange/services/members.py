"""Who is in a course: the roster an instructor sees."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.models import Enrolment, User


def course_members(session: Session, course_id: int) -> list[tuple[Enrolment, User]]:
    """Every enrolment of the course with its user, by username (one query)."""
    rows = session.execute(
        select(Enrolment, User)
        .join(User, User.id == Enrolment.user_id)
        .where(Enrolment.course_id == course_id)
        .order_by(User.username)
    )
    return [(enrolment, user) for enrolment, user in rows]
