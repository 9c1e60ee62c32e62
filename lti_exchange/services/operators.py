"""What the operator's commands do to the database: find courses and enrolments by
organisation, issue an enrolment for a token (noting a role change), revoke a user's tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from lti_exchange.errors import InvalidRequest, NotFound
from lti_exchange.models import Course, Enrolment, Organisation, User
from lti_exchange.models.types import utcnow
from lti_exchange.services.provisioning import find_or_create_org, provision
from lti_exchange.tokens.refresh import revoke_enrolments


def org_filter(org: str) -> ColumnElement[bool]:
    """The organisation named by ``org``: a numeric id, else a name."""
    return Organisation.id == int(org) if org.isdigit() else Organisation.name == org


def find_course(session: Session, course: str, org: str | None = None) -> Course:
    """The course with code ``course`` (in organisation ``org``, an id or a name)."""
    query = select(Course).where(Course.code == course)
    if org:
        query = query.join(Organisation, Organisation.id == Course.org_id).where(org_filter(org))
    rows = session.execute(query).scalars().all()
    if not rows:
        where = f" in organisation {org}" if org else ""
        raise NotFound(f"No course {course!r}{where}.", code="course_not_found")
    if len(rows) > 1:
        raise InvalidRequest(
            f"Several organisations have a course {course!r}; add --org ORG (id or name)."
        )
    return rows[0]


def enrolments_of(
    session: Session, username: str, course: str | None = None, org: str | None = None
) -> list[Enrolment]:
    """The enrolments of user ``username`` (in course ``course``) (of organisation ``org``)."""
    query = (
        select(Enrolment)
        .join(User, User.id == Enrolment.user_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(User.username == username)
    )
    if course:
        query = query.where(Course.code == course)
    if org:
        query = query.join(Organisation, Organisation.id == User.org_id).where(org_filter(org))
    return list(session.execute(query.order_by(Course.code)).scalars())


@dataclass(frozen=True)
class Revocation:
    courses: list[str]
    refresh_tokens_revoked: int
    revoked_at: datetime


def revoke_tokens(
    session: Session, username: str, course: str | None = None, org: str | None = None
) -> Revocation:
    """End the user's sessions (access and refresh tokens) in the matching enrolments; the
    caller commits. Raises ``NotFound`` when no enrolment matches."""
    enrolments = enrolments_of(session, username, course, org)
    if not enrolments:
        raise NotFound(f"No enrolment of {username!r} matches; nothing revoked.")
    revoked = revoke_enrolments(session, [e.id for e in enrolments])
    return Revocation(
        courses=[e.course.code for e in enrolments],
        refresh_tokens_revoked=revoked,
        revoked_at=max((e.tokens_not_before or utcnow() for e in enrolments), default=utcnow()),
    )


@dataclass(frozen=True)
class IssuedEnrolment:
    enrolment: Enrolment
    previous_role: str | None  # the role before, when it changed; None for new or unchanged


def enrol_for_token(
    session: Session,
    *,
    org: str,
    username: str,
    course_code: str,
    role: str,
    **profile: str | None,
) -> IssuedEnrolment:
    """Create or update the organisation, user, course and enrolment a token is issued for."""
    organisation = find_or_create_org(session, org)
    before = session.execute(
        select(Enrolment.role)
        .join(User, User.id == Enrolment.user_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            User.org_id == organisation.id,
            User.username == username,
            Course.org_id == organisation.id,
            Course.code == course_code,
        )
    ).scalar_one_or_none()
    enrolment = provision(
        session,
        org=organisation,
        username=username,
        course_code=course_code,
        role=role,
        **profile,
    )
    return IssuedEnrolment(enrolment, before if before not in (None, role) else None)
