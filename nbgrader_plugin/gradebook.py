"""Writing what the exchange knows about a student into nbgrader's gradebook."""

from __future__ import annotations

from typing import Any

from nbgrader.api import Gradebook


def record_student(gradebook: Gradebook, student_id: str, profile: dict[str, Any]) -> None:
    """Create or update ``student_id`` with the profile's names, email and LMS user id
    (``{"name", "email", "lms_user_id"}``; missing values leave the gradebook's as they are)."""
    first, _, last = (profile.get("name") or "").partition(" ")
    fields = {
        "first_name": first or None,
        "last_name": last or None,
        "email": profile.get("email"),
        "lms_user_id": profile.get("lms_user_id"),
    }
    gradebook.update_or_create_student(student_id, **{k: v for k, v in fields.items() if v})
