"""What the instructor dashboard and the student view show (no Flask).

``course_overview`` answers the whole course in a constant number of queries (grouped counts,
one row per student and assignment for submissions), whatever the course size; ``student_detail``
does the same for one student; ``retry_grade`` re-queues a grade the LMS refused.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lti_exchange.errors import Conflict, NotFound
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import (
    LEARNER,
    Assignment,
    Course,
    Enrolment,
    Event,
    Feedback,
    Grade,
    Release,
    Submission,
    User,
)
from lti_exchange.models.grade import FAILED, GRADE_STATUSES, PENDING
from lti_exchange.models.types import utcnow
from lti_exchange.services.due_dates import DueDates, course_due_dates, is_late
from lti_exchange.services.grade_outbox import arm
from lti_exchange.timestamps import format_timestamp


def _ts(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment else None


@dataclass
class AssignmentSummary:
    name: str
    released: bool = False
    releases: list[tuple[int, datetime]] = field(default_factory=list)
    due_at: datetime | None = None
    due_source: str | None = None
    fetched: int = 0
    submitted: int = 0
    late: int = 0
    not_submitted: int = 0
    collected: int = 0
    feedback: int = 0
    grades: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRADE_STATUSES, 0))
    failed: list[tuple[str, str | None]] = field(default_factory=list)
    first_submissions: list[datetime] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "assignment_id": self.name,
            "released": self.released,
            "releases": [{"version": v, "released_at": _ts(at)} for v, at in self.releases],
            "due_at": _ts(self.due_at),
            "due_source": self.due_source,
            "fetched": self.fetched,
            "submitted": self.submitted,
            "late": self.late,
            "not_submitted": self.not_submitted,
            "collected": self.collected,
            "feedback_released": self.feedback,
            "grades": self.grades,
            "failed_grades": [{"student_id": s, "reason": r} for s, r in self.failed],
            "submissions_over_time": [_ts(t) for t in self.first_submissions],
        }


@dataclass
class CourseOverview:
    course: Course
    learners: list[tuple[int, str, str | None]]  # (user id, username, name), sorted
    assignments: list[AssignmentSummary]

    def to_json(self) -> dict[str, Any]:
        return {
            "course_id": self.course.code,
            "title": self.course.title,
            "learners": len(self.learners),
            "assignments": [a.to_json() for a in self.assignments],
        }


def course_overview(session: Session, course: Course) -> CourseOverview:
    """Per assignment: releases, fetched, submitted, late, not submitted (roster learners),
    collected, feedback released, grade delivery counts and failures. Ten queries."""
    cid = course.id
    rows = session.execute(
        select(Assignment.id, Assignment.name, Assignment.released).where(
            Assignment.course_id == cid
        )
    ).all()
    by_id = {aid: name for aid, name, _r in rows}
    summaries = {name: AssignmentSummary(name=name, released=bool(r)) for _a, name, r in rows}

    def summary(name: str) -> AssignmentSummary:
        return summaries.setdefault(name, AssignmentSummary(name=name))

    for aid, version, at in session.execute(
        select(Release.assignment_id, Release.version, Release.created_at)
        .join(Assignment, Assignment.id == Release.assignment_id)
        .where(Assignment.course_id == cid)
        .order_by(Release.assignment_id, Release.version)
    ):
        summaries[by_id[aid]].releases.append((version, at))
    for event_aid, count in session.execute(
        select(Event.assignment_id, func.count(func.distinct(Event.user_id)))
        .where(Event.course_id == cid, Event.kind == "fetched", Event.assignment_id.is_not(None))
        .group_by(Event.assignment_id)
    ):
        if event_aid in by_id:
            summaries[by_id[event_aid]].fetched = count
    for aid, count in session.execute(
        select(Submission.assignment_id, func.count(func.distinct(Submission.user_id)))
        .join(Feedback, Feedback.submission_id == Submission.id)
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Assignment.course_id == cid)
        .group_by(Submission.assignment_id)
    ):
        summaries[by_id[aid]].feedback = count
    learners = [
        (uid, username, name)
        for uid, username, name in session.execute(
            select(User.id, User.username, User.name)
            .join(Enrolment, Enrolment.user_id == User.id)
            .where(
                Enrolment.course_id == cid, Enrolment.role == LEARNER, Enrolment.active.is_(True)
            )
            .order_by(User.username)
        )
    ]
    dues = course_due_dates(session, cid)
    for name, row in dues.due.items():
        s = summary(name)
        s.due_at, s.due_source = row.due_at, row.source
    submitters: dict[str, set[int]] = defaultdict(set)
    for aid, uid, first, last, collected in session.execute(
        select(
            Submission.assignment_id,
            Submission.user_id,
            func.min(Submission.timestamp),
            func.max(Submission.timestamp),
            func.max(Submission.collected_at),
        )
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Assignment.course_id == cid, Submission.removed_at.is_(None))
        .group_by(Submission.assignment_id, Submission.user_id)
    ):
        s = summaries[by_id[aid]]
        s.submitted += 1
        s.first_submissions.append(_aware(first) or first)
        submitters[s.name].add(uid)
        if collected is not None:
            s.collected += 1
        if is_late(_aware(last), dues.for_student(s.name, uid)):
            s.late += 1
    for name, status, count in session.execute(
        select(Grade.assignment_name, Grade.status, func.count())
        .where(Grade.course_id == cid)
        .group_by(Grade.assignment_name, Grade.status)
    ):
        summary(name).grades[status] = count
    for name, student, reason in session.execute(
        select(Grade.assignment_name, Grade.student_id, Grade.reason)
        .where(Grade.course_id == cid, Grade.status == FAILED)
        .order_by(Grade.assignment_name, Grade.student_id)
    ):
        summary(name).failed.append((student, reason))
    learner_ids = {uid for uid, _u, _n in learners}
    for s in summaries.values():
        s.not_submitted = len(learner_ids - submitters[s.name])
        s.first_submissions.sort()
    ordered = sorted(summaries.values(), key=lambda s: s.name)
    return CourseOverview(course=course, learners=learners, assignments=ordered)


def _aware(moment: datetime | None) -> datetime | None:
    """Aggregates (min/max) bypass the column type on some backends: make them aware UTC."""
    if moment is None:
        return None
    if isinstance(moment, str):  # SQLite returns aggregates of DATETIME as text
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class StudentAssignment:
    name: str
    released_at: datetime | None = None
    due_at: datetime | None = None
    extended: bool = False
    fetched_at: datetime | None = None
    submissions: list[tuple[datetime, bool, datetime | None]] = field(default_factory=list)
    feedback_ready: bool = False
    feedback_fetched_at: datetime | None = None
    grade: tuple[str, float, float, str | None] | None = None  # status, score, max, reason

    @property
    def late(self) -> bool:
        return bool(self.submissions) and self.submissions[-1][1]

    def to_json(self) -> dict[str, Any]:
        return {
            "assignment_id": self.name,
            "released_at": _ts(self.released_at),
            "due_at": _ts(self.due_at),
            "extended": self.extended,
            "fetched_at": _ts(self.fetched_at),
            "submissions": [
                {"timestamp": _ts(t), "late": late, "collected_at": _ts(c)}
                for t, late, c in self.submissions
            ],
            "late": self.late,
            "feedback_ready": self.feedback_ready,
            "feedback_fetched_at": _ts(self.feedback_fetched_at),
            "grade": None
            if self.grade is None
            else {
                "status": self.grade[0],
                "score": self.grade[1],
                "max_score": self.grade[2],
                "reason": self.grade[3],
            },
        }


@dataclass
class StudentDetail:
    course: Course
    user: User
    role: str
    assignments: list[StudentAssignment]

    def to_json(self) -> dict[str, Any]:
        return {
            "course_id": self.course.code,
            "student_id": self.user.username,
            "name": self.user.name,
            "role": self.role,
            "assignments": [a.to_json() for a in self.assignments],
        }


def find_student(session: Session, course: Course, student: object) -> tuple[User, str]:
    """A user enrolled in the course (any role, active or not) and their role; else 404."""
    username = validate_identifier(student, "student")
    row = session.execute(
        select(User, Enrolment.role)
        .join(Enrolment, Enrolment.user_id == User.id)
        .where(Enrolment.course_id == course.id, User.username == username)
    ).first()
    if row is None:
        raise NotFound(
            f"No student '{username}' in course '{course.code}'.", code="student_not_found"
        )
    return row[0], row[1]


def student_detail(
    session: Session, course: Course, user: User, role: str, released_only: bool = False
) -> StudentDetail:
    """One person's assignments: release, due date (with extension), fetch, submissions (late
    or not), feedback, grade. Seven queries; ``released_only`` for the student's own view."""
    cid = course.id
    query = (
        select(Assignment.id, Assignment.name, Assignment.released, Release.created_at)
        .outerjoin(Release, Release.id == Assignment.current_release_id)
        .where(Assignment.course_id == cid)
    )
    rows = session.execute(query).all()
    by_id: dict[int, StudentAssignment] = {}
    items: dict[str, StudentAssignment] = {}
    for aid, name, released, released_at in rows:
        item = StudentAssignment(name=name, released_at=released_at if released else None)
        by_id[aid] = items[name] = item
    dues: DueDates = course_due_dates(session, cid, user.id)
    for event_aid, kind, at in session.execute(
        select(Event.assignment_id, Event.kind, func.max(Event.created_at))
        .where(
            Event.course_id == cid,
            Event.user_id == user.id,
            Event.kind.in_(("fetched", "feedback_fetched")),
        )
        .group_by(Event.assignment_id, Event.kind)
    ):
        if event_aid in by_id:
            if kind == "fetched":
                by_id[event_aid].fetched_at = _aware(at)
            else:
                by_id[event_aid].feedback_fetched_at = _aware(at)
    submissions = session.execute(
        select(
            Submission.id, Submission.assignment_id, Submission.timestamp, Submission.collected_at
        )
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(
            Assignment.course_id == cid,
            Submission.user_id == user.id,
            Submission.removed_at.is_(None),
        )
        .order_by(Submission.timestamp)
    ).all()
    with_feedback = set(
        session.execute(
            select(Feedback.submission_id)
            .join(Submission, Submission.id == Feedback.submission_id)
            .join(Assignment, Assignment.id == Submission.assignment_id)
            .where(Assignment.course_id == cid, Submission.user_id == user.id)
            .distinct()
        ).scalars()
    )
    grades = session.execute(
        select(
            Grade.assignment_name, Grade.status, Grade.score, Grade.max_score, Grade.reason
        ).where(Grade.course_id == cid, Grade.student_id == user.username)
    ).all()
    for name in dues.due:
        items.setdefault(name, StudentAssignment(name=name))
    for name, *_rest in grades:
        items.setdefault(name, StudentAssignment(name=name))
    for item in items.values():
        item.due_at = dues.for_student(item.name, user.id)
        item.extended = (item.name, user.id) in dues.extensions
    for sid, aid, stamp, collected in submissions:
        item = by_id[aid]
        item.submissions.append((stamp, is_late(stamp, item.due_at), collected))
        if sid in with_feedback:
            item.feedback_ready = True
    for name, status, score, max_score, reason in grades:
        items[name].grade = (status, score, max_score, reason)
    shown = sorted(items.values(), key=lambda a: a.name)
    if released_only:
        shown = [a for a in shown if a.released_at or a.submissions or a.grade]
    return StudentDetail(course=course, user=user, role=role, assignments=shown)


def retry_grade(session: Session, course: Course, assignment: object, student: object) -> None:
    """Queue a grade the LMS refused again (status pending, a fresh outbox row); commits."""
    name = validate_identifier(assignment, "assignment")
    username = validate_identifier(student, "student")
    grade = session.execute(
        select(Grade).where(
            Grade.course_id == course.id,
            Grade.assignment_name == name,
            Grade.student_id == username,
        )
    ).scalar_one_or_none()
    if grade is None:
        raise NotFound(
            f"No grade of '{username}' for '{name}' in course '{course.code}'.",
            code="grade_not_found",
        )
    if grade.status != FAILED:
        raise Conflict(
            f"The grade of '{username}' for '{name}' is {grade.status}, not failed: only a "
            "failed grade can be sent again.",
            code="grade_not_failed",
        )
    now = utcnow()
    grade.status, grade.reason, grade.updated_at = PENDING, None, now
    arm(session, [grade.id], now)
    session.commit()
