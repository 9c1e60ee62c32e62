"""The exchange's due dates in nbgrader's gradebook, so autograde's lateness agrees with the
exchange's dashboard.

``GET /api/v1/courses/{c}/assignments/{a}/due-dates`` answers the assignment's due date (from the
LMS or set on the dashboard) and each student's extension. When the exchange states a due date,
collect writes it as the gradebook assignment's ``duedate`` and each listed student's extension
as ``SubmittedAssignment.extension`` (nbgrader adds it to the due date; no extension clears
one). When it states none, the gradebook's own due date and extensions are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nbgrader.api import Gradebook
from nbgrader.utils import parse_utc

from nbgrader_plugin.client import ExchangeClient, ExchangeClientError, path
from nbgrader_plugin.gradebook import record_students


@dataclass(frozen=True)
class DueDates:
    due_at: datetime | None = None  # naive UTC, as nbgrader stores it
    extensions: dict[str, timedelta] = field(default_factory=dict)

    def for_student(self, student_id: str, fallback: datetime | None) -> datetime | None:
        """The student's due date: the exchange's (with extension), else ``fallback``."""
        if self.due_at is None:
            return fallback
        return self.due_at + self.extensions.get(student_id, timedelta(0))


def fetch_due_dates(api: ExchangeClient, course_id: str, assignment_id: str) -> DueDates:
    """The exchange's due dates (none from an exchange without the endpoint: 404)."""
    try:
        body: dict[str, Any] = api.get_json(
            path("courses", course_id, "assignments", assignment_id, "due-dates")
        )
    except ExchangeClientError as exc:
        if exc.status == 404 and exc.code in (None, "not_found"):
            return DueDates()
        raise
    if not body.get("due_at"):
        return DueDates()
    extensions = {
        item["student_id"]: timedelta(seconds=float(item["extension_seconds"]))
        for item in body.get("extensions") or []
        if item.get("extension_seconds")
    }
    return DueDates(due_at=parse_utc(body["due_at"]), extensions=extensions)


def write_due_date(gradebook: Gradebook, assignment_id: str, due: DueDates) -> None:
    """The exchange's due date as the gradebook assignment's (nothing when it states none)."""
    if due.due_at is not None:
        gradebook.update_or_create_assignment(assignment_id, duedate=due.due_at)


def write_extensions(
    gradebook: Gradebook, assignment_id: str, students: list[str], due: DueDates
) -> None:
    """Each student's extension on their gradebook submission (created when missing)."""
    if due.due_at is None:
        return
    record_students(gradebook, {student_id: {} for student_id in students})
    existing = {s.student_id: s for s in gradebook.assignment_submissions(assignment_id)}
    for student_id in students:
        extension = due.extensions.get(student_id)
        submission = existing.get(student_id)
        if submission is None:  # new: nbgrader builds its notebooks and grades (and commits)
            gradebook.add_submission(assignment_id, student_id, extension=extension)
        else:
            submission.extension = extension
    gradebook.db.commit()  # the changed extensions, in one transaction
