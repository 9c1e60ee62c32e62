"""Which nbgrader course an LMS context is: readable derived ids, re-mapping a context's course.

- A new context's course id is the launch's custom ``nbgrader_course_id`` when it has one, else
  the context label (else title) as a slug (``slug``); only when another context of the
  organisation already has that id does it get a short suffix from the context id (``-1a2b``, then
  ``-1a2b3c4d``).
- A later launch asking for another id (``follow_launch``) renames the course when nothing has been
  released in it yet and the id is free; a course with assignments is never renamed by a launch:
  the launch is refused with the command that renames it (``map_context``, ``course map``).
- Renaming changes only the code: the course row, its assignments, submissions, feedback, grades
  and enrolments stay as they are (they refer to the course's integer key). Each rename is an
  audit event ``course_renamed`` ``{"from", "to", "by"}``, so links that still carry a former id
  (deep links made before) keep opening the course.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.errors import ApiError, InvalidRequest, NotFound
from lti_exchange.identifiers import MAX_IDENTIFIER_LENGTH, is_valid_identifier, validate_identifier
from lti_exchange.models import Assignment, Course, Event, Organisation, Submission

RENAMED = "course_renamed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")
SUFFIX_ROOM = 9  # "-" + at most 8 hex digits


class CourseIdTaken(ApiError):
    status, code = 409, "course_id_taken"


class CourseMappingConflict(ValueError):
    """A launch asks for a course id that its context's course cannot take now."""


def slug(value: str, fallback: str = "course") -> str:
    """A readable identifier from ``value``: runs of other characters become ``-``; no hash."""
    cleaned = _UNSAFE.sub("-", value.strip())
    cleaned = cleaned.lstrip(".@-")[: MAX_IDENTIFIER_LENGTH - SUFFIX_ROOM].rstrip(".-")
    return cleaned if is_valid_identifier(cleaned) else fallback


def _context_hash(context_id: str) -> str:
    return hashlib.sha256(context_id.encode()).hexdigest()


def candidates(base: str, context_id: str) -> list[str]:
    """``base``, then ``base`` with a 4- and an 8-digit suffix from the context id."""
    digest = _context_hash(context_id)
    stem = base[: MAX_IDENTIFIER_LENGTH - SUFFIX_ROOM]
    return [base, f"{stem}-{digest[:4]}", f"{stem}-{digest[:8]}"]


def requested_code(custom: object, param: str) -> str | None:
    """The course id a launch's custom parameters ask for (an unsubstituted ``$Variable`` or an
    empty value asks for nothing)."""
    wanted = custom.get(param) if isinstance(custom, dict) else None
    if not isinstance(wanted, str) or not wanted.strip() or wanted.strip().startswith("$"):
        return None
    return slug(wanted, fallback="") or None


def former_codes(session: Session, course_id: int) -> set[str]:
    """The ids the course had before it was renamed."""
    rows = session.execute(
        select(Event.details).where(Event.course_id == course_id, Event.kind == RENAMED)
    ).scalars()
    return {str(d["from"]) for d in rows if isinstance(d, dict) and d.get("from")}


def _owner(session: Session, org_id: int, code: str) -> Course | None:
    return session.execute(
        select(Course).where(Course.org_id == org_id, Course.code == code)
    ).scalar_one_or_none()


def has_assignments(session: Session, course_id: int) -> bool:
    found = session.execute(
        select(Assignment.id).where(Assignment.course_id == course_id).limit(1)
    ).first()
    return found is not None


def rename(session: Session, course: Course, new_code: str, by: str) -> str:
    """Give ``course`` the code ``new_code`` (flushed) and record the rename; return the old
    code. Raises ``IntegrityError`` when a concurrent transaction took ``new_code``."""
    old = course.code
    with session.begin_nested():
        course.code = new_code
        details = {"from": old, "to": new_code, "by": by}
        session.add(Event(kind=RENAMED, course_id=course.id, details=details))
    return old


def follow_launch(
    session: Session,
    course: Course,
    wanted: str,
    *,
    staff: bool,
    param: str,
) -> None:
    """Make the context's ``course`` answer to the launch's requested id ``wanted``.

    Nothing to do when it already does (its id, a suffixed form of it for this context, or a
    former id). Otherwise it is renamed when nothing has been released and ``wanted`` is free;
    else ``CourseMappingConflict`` with a message for staff (what happened, the command) or for
    learners (ask the instructor). ``IntegrityError`` means a concurrent launch: retry.
    """
    context_id = course.lti_context_id or ""
    if course.code in candidates(wanted, context_id) or wanted in former_codes(session, course.id):
        return
    owner = _owner(session, course.org_id, wanted)
    released = has_assignments(session, course.id)
    if owner is None and not released:
        rename(session, course, wanted, by="launch")
        return
    if not staff:
        raise CourseMappingConflict(
            f"This course's link to the nbgrader exchange needs your instructor's attention: the "
            f"LMS asks for the nbgrader course '{wanted}', and the exchange has this course as "
            f"'{course.code}'. Nothing was changed and your work is safe. Please tell your "
            "instructor; you can open the assignment again once they have fixed it."
        )
    if owner is not None:
        raise CourseMappingConflict(
            f"This LMS course asks for the nbgrader course id '{wanted}' (custom parameter "
            f"{param}), but another course of this organisation already uses that id. This course "
            f"keeps its id '{course.code}' and nothing was changed. Set {param} to an id no other "
            f"course uses (or to '{course.code}', or remove it) in the LMS, then launch again."
        )
    command = (
        f"lti-exchange course map --org {course.org_id} --context {shlex.quote(context_id)} "
        f"--course-id {shlex.quote(wanted)}"
    )
    raise CourseMappingConflict(
        f"This LMS course asks for the nbgrader course id '{wanted}' (custom parameter {param}), "
        f"but it is linked to the nbgrader course '{course.code}', which already has assignments, "
        "so a launch does not rename it. Nothing was changed. To rename it to "
        f"'{wanted}' (its assignments, submissions and grades stay with it), ask the exchange's "
        f"administrator to run: {command} — or set {param} back to '{course.code}' in the LMS. "
        "After a rename, everyone launches again and nbgrader's course_id becomes the new id."
    )


# -- the operator's command --------------------------------------------------------------------
@dataclass(frozen=True)
class MapResult:
    action: str  # "created", "adopted", "renamed" or "unchanged"
    org_id: int
    context_id: str
    course_id: str
    previous_course_id: str | None
    assignments: int
    submissions: int

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "org_id": self.org_id,
            "context_id": self.context_id,
            "course_id": self.course_id,
            "previous_course_id": self.previous_course_id,
            "assignments": self.assignments,
            "submissions": self.submissions,
        }


def find_org(session: Session, org: str) -> Organisation:
    """An existing organisation by id or name."""
    query = (
        select(Organisation).where(Organisation.id == int(org))
        if org.isdigit()
        else select(Organisation).where(Organisation.name == org)
    )
    found = session.execute(query).scalar_one_or_none()
    if found is None:
        raise NotFound(
            f"No organisation {org!r}; `lti-exchange platform list` shows them.",
            code="org_not_found",
        )
    return found


def _counts(session: Session, course_id: int) -> tuple[int, int]:
    assignments = session.execute(
        select(func.count(Assignment.id)).where(Assignment.course_id == course_id)
    ).scalar_one()
    submissions = session.execute(
        select(func.count(Submission.id))
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Assignment.course_id == course_id)
    ).scalar_one()
    return int(assignments), int(submissions)


def map_context(session: Session, org: str, context_id: str, code: str) -> MapResult:
    """Map the LMS context ``context_id`` of organisation ``org`` to the course id ``code``
    (flushed; the caller commits).

    The context's course is renamed (its data stays with it); a context nobody launched yet
    gets a new course (or adopts an operator-made course with that id and no context). Refused
    (``CourseIdTaken``) when ``code`` belongs to another context's course, or to another course
    while the context already has one (two courses are never merged).
    """
    validate_identifier(code, "course")
    context_id = context_id.strip()
    if not context_id or len(context_id) > 255:
        raise InvalidRequest("--context must be the LMS context id (1 to 255 characters).")
    organisation = find_org(session, org)
    course = session.execute(
        select(Course).where(Course.org_id == organisation.id, Course.lti_context_id == context_id)
    ).scalar_one_or_none()
    owner = _owner(session, organisation.id, code)
    if course is not None and owner is not None and owner.id == course.id:
        counts = _counts(session, course.id)
        return MapResult("unchanged", organisation.id, context_id, code, None, *counts)
    if owner is not None and (course is not None or owner.lti_context_id is not None):
        other = (
            f"LMS context {owner.lti_context_id!r}" if owner.lti_context_id else "no LMS context"
        )
        raise CourseIdTaken(
            f"The course id {code!r} is already used in organisation {organisation.id} by another "
            f"course ({other}); nothing was changed. Choose another id, or map that course's "
            "context to another id first.",
        )
    try:
        if course is not None:
            previous = rename(session, course, code, by="operator")
            return MapResult(
                "renamed", organisation.id, context_id, code, previous, *_counts(session, course.id)
            )
        if owner is not None:  # made by `token issue`, no context yet: it becomes this context's
            owner.lti_context_id = context_id
            session.flush()
            return MapResult(
                "adopted", organisation.id, context_id, code, None, *_counts(session, owner.id)
            )
        with session.begin_nested():
            session.add(Course(org_id=organisation.id, code=code, lti_context_id=context_id))
    except IntegrityError as exc:
        raise CourseIdTaken(
            f"The course id {code!r} or the context {context_id!r} was just taken by a launch in "
            f"organisation {organisation.id}; run the command again to see the current state."
        ) from exc
    return MapResult("created", organisation.id, context_id, code, None, 0, 0)
