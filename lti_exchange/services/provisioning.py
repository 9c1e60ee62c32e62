"""Create or update organisations, users, courses and enrolments (idempotent upserts)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.errors import InvalidRequest, NotFound
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import COURSE_ROLES, Course, Enrolment, Organisation, User


def _get_or_create(session: Session, model, lookup: dict, defaults: dict | None = None):
    query = select(model).filter_by(**lookup)
    row = session.execute(query).scalar_one_or_none()
    if row is not None:
        return row, False
    try:
        with session.begin_nested():
            row = model(**lookup, **(defaults or {}))
            session.add(row)
        return row, True
    except IntegrityError:
        return session.execute(query).scalar_one(), False


def find_or_create_org(session: Session, org: str) -> Organisation:
    """An organisation by numeric id (must exist) or by name (created when new)."""
    if org.isdigit():
        found = session.get(Organisation, int(org))
        if found is None:
            raise NotFound(f"No organisation with id {org}.", code="org_not_found")
        return found
    if not org.strip():
        raise InvalidRequest("The organisation name is empty.")
    row, _ = _get_or_create(session, Organisation, {"name": org.strip()})
    return row


def provision(
    session: Session,
    *,
    org: Organisation,
    username: str,
    course_code: str,
    role: str,
    course_title: str | None = None,
    lms_user_id: str | None = None,
    name: str | None = None,
    email: str | None = None,
) -> Enrolment:
    """Upsert the user, course and an active enrolment with ``role``; return the enrolment."""
    validate_identifier(username, "student")
    validate_identifier(course_code, "course")
    if role not in COURSE_ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; use one of {', '.join(COURSE_ROLES)}.")
    user, _ = _get_or_create(session, User, {"org_id": org.id, "username": username})
    for attr, value in (("lms_user_id", lms_user_id), ("name", name), ("email", email)):
        if value is not None:
            setattr(user, attr, value)
    course, _ = _get_or_create(session, Course, {"org_id": org.id, "code": course_code})
    if course_title is not None:
        course.title = course_title
    enrolment, _ = _get_or_create(
        session, Enrolment, {"user_id": user.id, "course_id": course.id}, {"role": role}
    )
    enrolment.role = role
    enrolment.active = True
    session.flush()
    return enrolment
