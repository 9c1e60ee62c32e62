"""Who is calling: verified token claims checked against the live enrolment row (no Flask)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import Session

from lti_exchange import direct_sql
from lti_exchange.direct_sql import DirectStatement
from lti_exchange.errors import Forbidden, NotFound, Unauthenticated
from lti_exchange.identifiers import is_valid_identifier, validate_identifier
from lti_exchange.models import STAFF_ROLES, Assignment, Course, Enrolment, Release, User
from lti_exchange.tokens.access import RELAUNCH_HINT, TokenClaims, revocation_ms


@dataclass(frozen=True)
class Caller:
    """An authenticated user acting in one course, with the role their enrolment has now.

    The ids and names every request needs come with the authorising query as plain values; the
    ``user`` and ``course`` rows are loaded only when a (less frequent) route asks for them.
    """

    user_id: int
    username: str
    name: str | None
    email: str | None
    lms_user_id: str | None
    course_id: int
    course_code: str
    course_title: str | None
    org_id: int
    role: str
    claims: TokenClaims
    session: Session = field(repr=False, compare=False)
    # The authorising statement's row when a ``Lookup`` rode along with it, and that lookup.
    found: Any = field(default=None, repr=False, compare=False)  # a Row, or None
    lookup: Lookup | None = field(default=None, repr=False, compare=False)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def found_by(self, lookup: Lookup | None) -> Any:
        """The row ``lookup`` fetched with the authorisation, if it was this lookup (same
        statement, same values); None otherwise (the caller then asks on its own)."""
        mine = self.lookup
        if (
            mine is None
            or lookup is None
            or mine.statement is not lookup.statement
            or mine.params != lookup.params
        ):
            return None
        return self.found

    @cached_property
    def user(self) -> User:
        return self.session.get_one(User, self.user_id)

    @cached_property
    def course(self) -> Course:
        return self.session.get_one(Course, self.course_id)


@dataclass(frozen=True)
class Lookup:
    """Columns a hot path needs, fetched by the authorising statement itself (one round trip
    instead of two): ``statement`` is from ``enrolment_with_assignment``, ``params`` binds it."""

    statement: DirectStatement
    params: dict[str, Any]


# Built once: the enrolment's columns with its user's and course's in one statement, as plain
# values (no ORM objects to build per request), compiled once per dialect and run on the DBAPI
# cursor (``direct_sql``): each request only binds its values.
_ENROLMENT_SELECT = (
    select(
        Enrolment.user_id,
        User.username,
        User.name,
        User.email,
        User.lms_user_id,
        Enrolment.course_id,
        Course.title,
        Enrolment.role,
        Enrolment.active,
        Enrolment.tokens_not_before,
    )
    .join(Enrolment.course)
    .join(Enrolment.user)
    .where(
        Enrolment.user_id == bindparam("user_id"),
        Course.code == bindparam("course_code"),
        Course.org_id == bindparam("org_id"),
        User.org_id == bindparam("org_id"),
    )
)
_ENROLMENT = DirectStatement(_ENROLMENT_SELECT)


def enrolment_with_assignment(*columns: Any) -> Select[Any]:
    """The authorising statement, also giving ``columns`` of the course's assignment named by
    the bind parameter ``assignment_name`` and of its current release (NULL where there is
    none). Build it once, at import; label the columns apart from the enrolment's."""
    return (
        _ENROLMENT_SELECT.add_columns(*columns)
        .outerjoin(
            Assignment,
            and_(
                Assignment.course_id == Enrolment.course_id,
                Assignment.name == bindparam("assignment_name"),
            ),
        )
        .outerjoin(Release, Release.id == Assignment.current_release_id)
    )


def assignment_lookup(statement: DirectStatement, name: str) -> Lookup | None:
    """``statement`` (from ``enrolment_with_assignment``) for the assignment ``name``; None for
    a name that is no identifier (it reaches no SQL: the service refuses it after the
    authorisation, as without a lookup)."""
    if not is_valid_identifier(name):
        return None
    return Lookup(statement, {"assignment_name": name})


class AssignmentColumns:
    """Columns a hot path needs of one of the course's assignments, by name, and of its
    current release. They ride along with the authorising query when the caller was
    authorised with ``lookup(name)`` (one round trip less); otherwise ``row`` asks for them
    on their own. Both forms outer-join, so ``present`` (a column label) says whether a row
    was found: NULL there means none (no such assignment, or a release it needs and lacks)."""

    def __init__(self, *columns: Any, present: str) -> None:
        self.present = present
        self.joined = DirectStatement(enrolment_with_assignment(*columns))
        self.alone = (
            select(*columns)
            .outerjoin(Release, Release.id == Assignment.current_release_id)
            .where(
                Assignment.course_id == bindparam("course_id"),
                Assignment.name == bindparam("name"),
            )
        )

    def lookup(self, name: str) -> Lookup | None:
        """What ``caller_for`` passes on to fetch these columns with the authorisation."""
        return assignment_lookup(self.joined, name)

    def row(self, session: Session, caller: Caller, name: str) -> Any:
        """The columns for assignment ``name`` of the caller's course, or None."""
        found = caller.found_by(self.lookup(name))
        if found is None:
            params = {"course_id": caller.course_id, "name": name}
            found = session.connection().execute(self.alone, params).first()
        return found if found is not None and getattr(found, self.present) is not None else None


def authorise_course(
    session: Session,
    claims: TokenClaims,
    course_code: str,
    roles: Iterable[str],
    lookup: Lookup | None = None,
) -> Caller:
    """Return the caller when their token and live enrolment allow ``roles`` in ``course_code``.

    One query: the enrolment joined with its user and course, scoped to the token's organisation
    (on the session's connection: a Core statement, without the ORM's per-execution work); with
    a ``lookup``, that query also brings the lookup's columns (``Caller.found_by``).
    """
    validate_identifier(course_code, "course")
    if claims.course_code != course_code:
        exists = session.execute(
            select(Course.id).where(Course.org_id == claims.org_id, Course.code == course_code)
        ).first()
        if exists is None:
            raise not_found("course", course_code, course_code)
        raise Forbidden(
            f"Your access token is for course '{claims.course_code}', not '{course_code}'. "
            f"Launch '{course_code}' from your LMS to get a token for it.",
            code="wrong_course",
        )
    params = {"user_id": claims.user_id, "course_code": course_code, "org_id": claims.org_id}
    statement = _ENROLMENT
    if lookup is not None:
        statement, params = lookup.statement, {**params, **lookup.params}
    enrolment = direct_sql.first(session, statement, params)
    if enrolment is None:
        raise Forbidden(
            f"You are not enrolled in course '{course_code}'. {RELAUNCH_HINT}", code="not_enrolled"
        )
    if not enrolment.active:
        raise Forbidden(
            f"Your enrolment in course '{course_code}' has ended. Ask your instructor if this is "
            "a mistake.",
            code="enrolment_inactive",
        )
    not_before = enrolment.tokens_not_before
    if not_before is not None and claims.issued_ms < revocation_ms(not_before):
        raise Unauthenticated(
            f"This access token has been revoked. {RELAUNCH_HINT}", code="revoked"
        )
    allowed = tuple(roles)
    if enrolment.role not in allowed:
        raise Forbidden(
            f"This action needs the role {' or '.join(allowed)} in course '{course_code}'; "
            f"you are {enrolment.role}.",
            code="role_forbidden",
        )
    return Caller(
        user_id=enrolment.user_id,
        username=enrolment.username,
        name=enrolment.name,
        email=enrolment.email,
        lms_user_id=enrolment.lms_user_id,
        course_id=enrolment.course_id,
        course_code=course_code,
        course_title=enrolment.title,
        org_id=claims.org_id,
        role=enrolment.role,
        claims=claims,
        session=session,
        found=enrolment if lookup is not None else None,
        lookup=lookup,
    )


def not_found(kind: str, name: str, course: str) -> NotFound:
    if kind == "course":
        return NotFound(f"No course '{name}' exists.", code="course_not_found")
    return NotFound(f"No {kind} '{name}' in course '{course}'.", code=f"{kind}_not_found")
