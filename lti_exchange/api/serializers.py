"""JSON shapes of API resources."""

from __future__ import annotations

from lti_exchange.models import Release
from lti_exchange.services.assignments import AssignmentView
from lti_exchange.timestamps import format_timestamp


def release_json(release: Release) -> dict:
    return {
        "version": release.version,
        "notebooks": release.notebooks,
        "sha256": release.sha256,
        "size": release.size,
        "released_at": format_timestamp(release.created_at),
        "max_score": release.max_score,  # nbgrader's total points at release (None: unknown)
    }


def assignment_json(view: AssignmentView) -> dict:
    return {
        "assignment_id": view.assignment.name,
        "released": view.assignment.released,
        "release": release_json(view.release) if view.release else None,
        "fetched_at": format_timestamp(view.fetched_at) if view.fetched_at else None,
        "submission_count": view.submission_count,
    }
