"""Due dates and per-student extensions (no Flask).

An assignment's due date comes from, in order of precedence (a source never overwrites a date
of a source before it):

1. an instructor, on the dashboard or ``PUT …/due-date`` (``instructor``): a deliberate choice
   for this tool, e.g. a later deadline than the LMS shows;
2. the link's custom parameter ``due_at`` (``lms``; set in the LMS to the standard substitution
   variable ``$ResourceLink.submission.endDateTime``): the LMS fills it in at each launch from
   the link's own submission window, so it is the freshest and most specific statement;
3. the ``endDateTime`` of the LMS line item (gradebook column) of a link bound to the
   assignment (``lineitem``): read by the worker after a launch (never during it), when the
   launch carried no ``due_at``; a column may serve several links and is read asynchronously,
   so it only fills in what the launch did not state. A later read follows a change in the LMS
   (and a removed ``endDateTime`` removes the date).

An extension is a student's own due date; the effective due date of a student is their
extension, else the assignment's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.errors import InvalidRequest, NotFound
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import Course, DueDate, Enrolment, Extension, ResourceLink, User
from lti_exchange.models.due_date import SOURCE_INSTRUCTOR, SOURCE_LINEITEM, SOURCE_LMS
from lti_exchange.models.types import utcnow
from lti_exchange.services.provisioning import CLAIM, RetryProvisioning
from lti_exchange.services.retry import run_with_retry
from lti_exchange.timestamps import format_timestamp, parse_timestamp

DUE_PARAM = "due_at"


def lms_due_date(claims: dict[str, Any]) -> datetime | None:
    """The link's due date from the custom parameter ``due_at`` (None: absent, unsubstituted
    ``$ResourceLink.submission.endDateTime``, or not a date)."""
    custom = claims.get(CLAIM + "custom")
    value = custom.get(DUE_PARAM) if isinstance(custom, dict) else None
    if not isinstance(value, str) or not value.strip() or value.strip().startswith("$"):
        return None
    try:
        return parse_timestamp(value[:64])
    except InvalidRequest:
        return None


def record_lms_due_date(
    session: Session, course: Course, link: ResourceLink | None, claims: dict[str, Any]
) -> None:
    """Record the due date a launch states for its link's assignment (flushed, not committed).

    A concurrent first record raises ``RetryProvisioning`` (the launch runs its unit again).
    """
    due = lms_due_date(claims)
    if due is None or link is None or not link.assignment_name:
        return
    row = session.execute(
        select(DueDate).where(
            DueDate.course_id == course.id, DueDate.assignment_name == link.assignment_name
        )
    ).scalar_one_or_none()
    if row is not None:
        # the custom parameter outranks a line item's date; an instructor's outranks both
        if row.source == SOURCE_LINEITEM or (row.source == SOURCE_LMS and row.due_at != due):
            row.due_at, row.source, row.updated_at = due, SOURCE_LMS, utcnow()
        return
    try:
        with session.begin_nested():
            session.add(
                DueDate(
                    course_id=course.id,
                    assignment_name=link.assignment_name,
                    due_at=due,
                    source=SOURCE_LMS,
                    updated_at=utcnow(),
                )
            )
    except IntegrityError as exc:
        raise RetryProvisioning(str(exc)) from exc


def lineitem_due_date(item: dict[str, Any]) -> datetime | None:
    """A line item's ``endDateTime`` (None: absent, empty or not a date)."""
    value = item.get("endDateTime")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_timestamp(value[:64])
    except InvalidRequest:
        return None


def record_lineitem_due_date(
    session: Session, course_id: int, assignment: str, due: datetime | None
) -> str:
    """Record a line item's ``endDateTime`` as the assignment's due date unless an instructor
    or the ``due_at`` custom parameter stated one (None: the LMS states none; removes a date of
    this source). Commits; returns what happened: added, changed, removed, unchanged or kept
    (a date of a stronger source)."""

    def unit() -> str:
        row = session.execute(
            select(DueDate).where(
                DueDate.course_id == course_id, DueDate.assignment_name == assignment
            )
        ).scalar_one_or_none()
        outcome = "unchanged"
        if row is None and due is not None:
            session.add(
                DueDate(
                    course_id=course_id,
                    assignment_name=assignment,
                    due_at=due,
                    source=SOURCE_LINEITEM,
                    updated_at=utcnow(),
                )
            )
            outcome = "added"
        elif row is not None and row.source != SOURCE_LINEITEM:
            outcome = "kept"
        elif row is not None and due is None:
            session.delete(row)
            outcome = "removed"
        elif row is not None and row.due_at != due:
            assert due is not None
            row.due_at, row.updated_at = due, utcnow()
            outcome = "changed"
        session.commit()
        return outcome

    return run_with_retry(session, unit, what="record the line item's due date")


def parse_due_input(raw: object, what: str = "due_at") -> datetime | None:
    """An instructor's date: ISO 8601 or nbgrader's format; no zone means UTC; empty clears."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidRequest(
            f"{what} must be a date and time such as 2026-12-24T17:00:00Z (UTC), or empty.",
            code="invalid_due_date",
        )
    try:
        return parse_timestamp(raw)
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"{what} {raw[:40]!r} is not a date and time; use e.g. 2026-12-24T17:00:00Z (UTC).",
            code="invalid_due_date",
        ) from exc


def set_due_date(
    session: Session, course: Course, by_user_id: int, assignment: object, due: datetime | None
) -> None:
    """Set (or with None clear) an assignment's due date as an instructor; commits."""
    name = validate_identifier(assignment, "assignment")

    def unit() -> None:
        row = session.execute(
            select(DueDate).where(DueDate.course_id == course.id, DueDate.assignment_name == name)
        ).scalar_one_or_none()
        if due is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(
                DueDate(
                    course_id=course.id,
                    assignment_name=name,
                    due_at=due,
                    source=SOURCE_INSTRUCTOR,
                    set_by_id=by_user_id,
                    updated_at=utcnow(),
                )
            )
        else:
            row.due_at, row.source, row.set_by_id = due, SOURCE_INSTRUCTOR, by_user_id
            row.updated_at = utcnow()
        session.commit()

    run_with_retry(session, unit, what="set the due date")


def set_extension(
    session: Session,
    course: Course,
    by_user_id: int,
    assignment: object,
    student: object,
    due: datetime | None,
) -> None:
    """Give ``student`` their own due date for ``assignment`` (None removes it); commits."""
    name = validate_identifier(assignment, "assignment")
    username = validate_identifier(student, "student")
    user_id = session.execute(
        select(User.id)
        .join(Enrolment, Enrolment.user_id == User.id)
        .where(Enrolment.course_id == course.id, User.username == username)
    ).scalar_one_or_none()
    if user_id is None:
        raise NotFound(
            f"No student '{username}' in course '{course.code}'.", code="student_not_found"
        )

    def unit() -> None:
        match = (
            Extension.course_id == course.id,
            Extension.assignment_name == name,
            Extension.user_id == user_id,
        )
        if due is None:
            session.execute(delete(Extension).where(*match))
        else:
            row = session.execute(select(Extension).where(*match)).scalar_one_or_none()
            if row is None:
                row = Extension(course_id=course.id, assignment_name=name, user_id=user_id)
                session.add(row)
            row.due_at, row.set_by_id, row.updated_at = due, by_user_id, utcnow()
        session.commit()

    run_with_retry(session, unit, what="set the extension")


@dataclass(frozen=True)
class DueDates:
    """A course's due dates by assignment, and extensions by (assignment, user id)."""

    due: dict[str, DueDate]
    extensions: dict[tuple[str, int], datetime]

    def for_student(self, assignment: str, user_id: int) -> datetime | None:
        own = self.extensions.get((assignment, user_id))
        if own is not None:
            return own
        row = self.due.get(assignment)
        return row.due_at if row else None


def course_due_dates(session: Session, course_id: int, user_id: int | None = None) -> DueDates:
    """Every due date of the course and its extensions (of one user if given): two queries."""
    due = {
        row.assignment_name: row
        for row in session.execute(select(DueDate).where(DueDate.course_id == course_id)).scalars()
    }
    query = select(Extension.assignment_name, Extension.user_id, Extension.due_at).where(
        Extension.course_id == course_id
    )
    if user_id is not None:
        query = query.where(Extension.user_id == user_id)
    extensions = {(a, u): d for a, u, d in session.execute(query)}
    return DueDates(due=due, extensions=extensions)


def assignment_due_dates(session: Session, course: Course, assignment: object) -> dict[str, Any]:
    """What collect writes into the gradebook: the due date and each student's extension."""
    name = validate_identifier(assignment, "assignment")
    row = session.execute(
        select(DueDate).where(DueDate.course_id == course.id, DueDate.assignment_name == name)
    ).scalar_one_or_none()
    extensions = session.execute(
        select(User.username, Extension.due_at)
        .join(User, User.id == Extension.user_id)
        .where(Extension.course_id == course.id, Extension.assignment_name == name)
        .order_by(User.username)
    ).all()
    base = row.due_at if row else None
    return {
        "course_id": course.code,
        "assignment_id": name,
        "due_at": format_timestamp(base) if base else None,
        "source": row.source if row else None,
        "extensions": [
            {
                "student_id": username,
                "due_at": format_timestamp(due),
                # what nbgrader's SubmittedAssignment.extension holds (never negative)
                "extension_seconds": max(0.0, (due - base).total_seconds()) if base else None,
            }
            for username, due in extensions
        ],
    }


def is_late(submitted: datetime | None, due: datetime | None) -> bool:
    return submitted is not None and due is not None and submitted > due
