"""What the deep-linking chooser shows: the course's released assignments, each with its
current release's time and notebooks (one query, whatever the course size)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.models import Assignment, Release


@dataclass(frozen=True)
class ReleasedAssignment:
    name: str
    version: int
    released_at: datetime
    notebooks: list[str]

    @property
    def released_text(self) -> str:
        """The release time for people: ``2026-12-02 07:40 UTC``."""
        return self.released_at.strftime("%Y-%m-%d %H:%M UTC")


def released_assignments(session: Session, course_id: int) -> list[ReleasedAssignment]:
    """The course's released assignments by name, with their current release."""
    rows = session.execute(
        select(Assignment.name, Release.version, Release.created_at, Release.notebooks)
        .join(Release, Release.id == Assignment.current_release_id)
        .where(Assignment.course_id == course_id, Assignment.released.is_(True))
        .order_by(Assignment.name)
    ).all()
    return [
        ReleasedAssignment(name, version, created, sorted(notebooks or []))
        for name, version, created, notebooks in rows
    ]
