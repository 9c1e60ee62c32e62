"""What the deep-linking chooser shows: the course's released assignments, each with its
current release's time, notebooks and points (one query, whatever the course size).

A release's points are nbgrader's total for the assignment (``max_score`` in the gradebook): the
plugin sends them with the release (``POST …/releases?max_score=``). The chooser pre-fills its
maximum score with the chosen assignment's points; the person may change it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.errors import InvalidRequest
from lti_exchange.models import Assignment, Release

MAX_POINTS = 1_000_000  # the chooser's limit for a gradebook column's maximum score


@dataclass(frozen=True)
class ReleasedAssignment:
    name: str
    version: int
    released_at: datetime
    notebooks: list[str]
    max_score: float | None = None

    @property
    def released_text(self) -> str:
        """The release time for people: ``2026-12-02 07:40 UTC``."""
        return self.released_at.strftime("%Y-%m-%d %H:%M UTC")

    @property
    def points_text(self) -> str:
        """The points as the form field shows them: ``10``, ``7.5`` (empty: unknown)."""
        return points_text(self.max_score)


def points_text(points: float | None) -> str:
    return "" if points is None else f"{points:g}"


def released_assignments(session: Session, course_id: int) -> list[ReleasedAssignment]:
    """The course's released assignments by name, with their current release."""
    rows = session.execute(
        select(
            Assignment.name,
            Release.version,
            Release.created_at,
            Release.notebooks,
            Release.max_score,
        )
        .join(Release, Release.id == Assignment.current_release_id)
        .where(Assignment.course_id == course_id, Assignment.released.is_(True))
        .order_by(Assignment.name)
    ).all()
    return [
        ReleasedAssignment(name, version, created, sorted(notebooks or []), points)
        for name, version, created, notebooks, points in rows
    ]


def parse_release_points(raw: str | None) -> float | None:
    """A release's ``max_score`` query parameter: absent, or a number in (0, MAX_POINTS]."""
    if raw is None or raw == "":
        return None
    try:
        points = float(raw[:40])
    except ValueError:
        points = math.nan
    if not math.isfinite(points) or not 0 < points <= MAX_POINTS:
        raise InvalidRequest(
            f"max_score must be the assignment's total points, a number greater than 0 and at "
            f"most {MAX_POINTS:,} (got {raw[:40]!r}); leave it out when unknown.",
            code="invalid_max_score",
        )
    return points


def settled_max_score(
    sent: float | None, prefilled_for: object, chosen: str, points: dict[str, float]
) -> float | None:
    """The maximum score to put in the deep link: what the form sent, unless it is the
    untouched pre-fill of another assignment (a page without JavaScript keeps the first
    choice's points when another is chosen): then the chosen assignment's points, if known.

    ``prefilled_for`` is the form's ``max_score_for`` (the assignment whose points the field
    was filled with; the page's script clears it when the person types a score);
    ``points`` the released assignments' points when the page was made."""
    if not isinstance(prefilled_for, str) or prefilled_for == chosen:
        return sent
    if prefilled_for not in points or sent != points[prefilled_for]:
        return sent  # typed by the person, or no pre-fill
    return points.get(chosen, sent)


def known_points(released: list[ReleasedAssignment]) -> dict[str, float]:
    """``{assignment: points}`` of the released assignments whose points are known."""
    return {item.name: item.max_score for item in released if item.max_score is not None}
