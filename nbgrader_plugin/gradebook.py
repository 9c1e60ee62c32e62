"""Writing what the exchange knows about students into nbgrader's gradebook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbgrader.api import Gradebook, InvalidEntry, Student
from sqlalchemy.exc import SQLAlchemyError

BATCH = 500  # ids per IN (...) query: well under SQLite's variable limit


def student_fields(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Gradebook fields from the exchange's ``{"name", "email", "lms_user_id"}`` (only the
    values it states: a missing value leaves the gradebook's as it is)."""
    first, _, last = (profile.get("name") or "").partition(" ")
    fields = {
        "first_name": first or None,
        "last_name": last or None,
        "email": profile.get("email"),
        "lms_user_id": profile.get("lms_user_id"),
    }
    return {k: v for k, v in fields.items() if v}


def record_student(gradebook: Gradebook, student_id: str, profile: dict[str, Any]) -> None:
    """Create or update ``student_id`` with the profile's names, email and LMS user id."""
    record_students(gradebook, {student_id: profile})


def record_students(gradebook: Gradebook, profiles: Mapping[str, Mapping[str, Any]]) -> None:
    """Create or update each student (id → profile, as ``record_student``) in one transaction:
    what ``Gradebook.update_or_create_student`` does, without a commit (an fsync) per student."""
    if not profiles:
        return
    db = gradebook.db
    ids = list(profiles)
    found: dict[str, Student] = {}
    for start in range(0, len(ids), BATCH):
        query = db.query(Student).filter(Student.id.in_(ids[start : start + BATCH]))
        found.update((student.id, student) for student in query)
    for student_id, profile in profiles.items():
        fields = student_fields(profile)
        student = found.get(student_id)
        if student is None:
            db.add(Student(id=student_id, **fields))
        else:
            for name, value in fields.items():
                setattr(student, name, value)
    try:
        db.commit()
    except SQLAlchemyError as exc:
        db.rollback()
        raise InvalidEntry(*exc.args) from exc
