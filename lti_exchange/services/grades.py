"""Grades pushed from nbgrader's gradebook: recorded with an outbox entry in one transaction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from lti_exchange.errors import InvalidRequest
from lti_exchange.identifiers import validate_identifier
from lti_exchange.models import Course, Enrolment, Grade, GradeOutbox, User
from lti_exchange.models.grade import FAILED, GRADE_STATUSES, NOT_SENDABLE, PENDING, SENT
from lti_exchange.services.authorisation import Caller
from lti_exchange.services.context import ServiceContext
from lti_exchange.services.grade_outbox import arm
from lti_exchange.services.resource_links import NO_ENDPOINT, GradeTarget, grade_targets
from lti_exchange.services.retry import run_with_retry
from lti_exchange.timestamps import format_timestamp, parse_timestamp

MAX_GRADES_PER_PUSH = 20_000
MAX_SCORE = 1e9  # bound on score and max_score: finite, and far above any real assignment


@dataclass(frozen=True)
class GradeInput:
    assignment_id: str
    student_id: str
    score: float
    max_score: float
    submitted_at: datetime | None = None


def _number(value: object) -> float | None:
    """``value`` as a finite float within ±MAX_SCORE, or None (also for huge JSON integers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) > MAX_SCORE:
        return None  # float(10**400) would raise OverflowError
    number = float(value)
    return number if math.isfinite(number) and abs(number) <= MAX_SCORE else None


def parse_grades(body: dict[str, Any]) -> list[GradeInput]:
    """Check every grade of a push before anything is stored; raise ``InvalidRequest``."""
    items = body.get("grades")
    if not isinstance(items, list) or len(items) > MAX_GRADES_PER_PUSH:
        raise InvalidRequest(
            f'Send {{"grades": [...]}} with at most {MAX_GRADES_PER_PUSH} entries.'
        )
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"grades[{index}] must be an object.")
        score, max_score = _number(item.get("score")), _number(item.get("max_score"))
        if score is None or max_score is None or score < 0 or max_score <= 0:
            raise InvalidRequest(
                f"grades[{index}]: score and max_score must be numbers with 0 ≤ score ≤ "
                f"{MAX_SCORE:g} and 0 < max_score ≤ {MAX_SCORE:g}.",
                details={"index": index},
            )
        submitted = item.get("submitted_at")
        if submitted is not None and not isinstance(submitted, str):
            raise InvalidRequest(f"grades[{index}]: submitted_at must be a timestamp string.")
        out.append(
            GradeInput(
                assignment_id=validate_identifier(item.get("assignment_id"), "assignment"),
                student_id=validate_identifier(item.get("student_id"), "student"),
                score=score,
                max_score=max_score,
                submitted_at=parse_timestamp(submitted) if submitted else None,
            )
        )
    return out


def grade_json(grade: Grade) -> dict[str, Any]:
    return {
        "assignment_id": grade.assignment_name,
        "student_id": grade.student_id,
        "score": grade.score,
        "max_score": grade.max_score,
        "status": grade.status,
        "reason": grade.reason,
        "sent_at": format_timestamp(grade.sent_at) if grade.sent_at else None,
        "updated_at": format_timestamp(grade.updated_at),
    }


class GradeService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def _recipients(self, caller: Caller, students: set[str]) -> dict[str, tuple[User, bool]]:
        """Each student's user and whether they are enrolled in the course."""
        rows = self.session.execute(
            select(User, Enrolment.id)
            .outerjoin(
                Enrolment,
                (Enrolment.user_id == User.id) & (Enrolment.course_id == caller.course_id),
            )
            .where(User.org_id == caller.org_id, User.username.in_(students))
        ).all()
        return {user.username: (user, enrolment_id is not None) for user, enrolment_id in rows}

    def unsendable_reason(
        self, target: GradeTarget, user: User | None, enrolled: bool
    ) -> str | None:
        """Why this grade cannot go to the LMS (None: it can); ``target`` from
        ``services.resource_links.grade_targets`` (the LMS's gradebook and granted scopes)."""
        problem = target.problem()
        if problem == NO_ENDPOINT:
            return problem
        if user is None or not enrolled:
            return "not enrolled in the LMS course (never launched, not in the roster)"
        if not user.lti_sub:
            return "no LMS user id (created by an operator, not by the LMS)"
        if user.test_user:
            return "the LMS's student-view test user"
        return problem

    def push(self, caller: Caller, grades: list[GradeInput]) -> dict[str, Any]:
        """Record the grades; queue the changed, sendable ones. Unchanged grades send nothing.

        A concurrent push of the same new grade makes one transaction fail on the unique grade
        (or deadlock): it is run again, and then finds the other's grade.
        """
        return run_with_retry(
            self.session, lambda: self._push_once(caller, grades), what="record the grades"
        )

    def _push_once(self, caller: Caller, grades: list[GradeInput]) -> dict[str, Any]:
        recipients = self._recipients(caller, {g.student_id for g in grades})
        existing = {
            (g.assignment_name, g.student_id): g
            for g in self.session.execute(
                select(Grade).where(
                    Grade.course_id == caller.course_id,
                    Grade.student_id.in_({g.student_id for g in grades}),
                )
            ).scalars()
        }
        targets = grade_targets(self.session, caller.course, {g.assignment_id for g in grades})
        counts = {"queued": 0, "unchanged": 0, "not_sendable": 0}
        now = self.ctx.clock()
        touched = []
        for item in grades:
            user, enrolled = recipients.get(item.student_id, (None, False))
            reason = self.unsendable_reason(targets[item.assignment_id], user, enrolled)
            grade = existing.get((item.assignment_id, item.student_id))
            same = grade is not None and (grade.score, grade.max_score) == (
                item.score,
                item.max_score,
            )
            if same and grade is not None and grade.status in (PENDING, SENT) and reason is None:
                counts["unchanged"] += 1
                touched.append(grade)
                continue
            if grade is None:
                grade = Grade(
                    course_id=caller.course_id,
                    assignment_name=item.assignment_id,
                    student_id=item.student_id,
                    version=1,
                )
                self.session.add(grade)
                existing[(item.assignment_id, item.student_id)] = grade
            elif not same:
                grade.version += 1
            grade.score, grade.max_score = item.score, item.max_score
            if item.submitted_at:
                grade.submitted_at = item.submitted_at
            grade.pushed_by_id = caller.user_id
            grade.updated_at = now
            self.session.flush()
            if reason is not None:
                grade.status, grade.reason = NOT_SENDABLE, reason
                self.session.execute(delete(GradeOutbox).where(GradeOutbox.grade_id == grade.id))
                counts["not_sendable"] += 1
            else:
                grade.status, grade.reason = PENDING, None
                arm(self.session, [grade.id], now)
                counts["queued"] += 1
            touched.append(grade)
        self.session.commit()
        return {"counts": counts, "grades": [grade_json(g) for g in touched]}

    def status(self, caller: Caller, assignment: str | None = None) -> dict[str, Any]:
        return self.course_status(caller.course, assignment)

    def course_status(self, course: Course, assignment: str | None = None) -> dict[str, Any]:
        """Each grade of ``course`` (or of one assignment) with its status, and the counts."""
        query = select(Grade).where(Grade.course_id == course.id)
        if assignment is not None:
            query = query.where(
                Grade.assignment_name == validate_identifier(assignment, "assignment")
            )
        grades = (
            self.session.execute(query.order_by(Grade.assignment_name, Grade.student_id))
            .scalars()
            .all()
        )
        counts = dict.fromkeys(GRADE_STATUSES, 0)
        for grade in grades:
            counts[grade.status] += 1
        return {
            "course_id": course.code,
            "counts": counts,
            "grades": [grade_json(g) for g in grades],
            "failed": [grade_json(g) for g in grades if g.status == FAILED],
        }
