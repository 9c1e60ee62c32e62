"""Assignments: list, release (a new version), unrelease, download the released files."""

from __future__ import annotations

from flask import jsonify, request

from lti_exchange.api import bp
from lti_exchange.api.common import (
    ANY_ROLE,
    STAFF,
    archive_body,
    blob_response,
    context,
)
from lti_exchange.api.serializers import assignment_json, release_json
from lti_exchange.services.assignments import AssignmentService, release_to_fetch
from lti_exchange.services.chooser import parse_release_points
from lti_exchange.web.bearer import caller_for
from lti_exchange.web.body_limits import archive_upload


@bp.get("/courses/<path:course_id>/assignments")
def list_assignments(course_id: str):
    caller = caller_for(course_id, ANY_ROLE)
    views = AssignmentService(context()).list_for(caller)
    return jsonify(
        course_id=caller.course_code,
        role=caller.role,
        assignments=[assignment_json(v) for v in views],
    )


@bp.post("/courses/<path:course_id>/assignments/<path:assignment_id>/releases")
@archive_upload
def release_assignment(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    points = parse_release_points(request.args.get("max_score"))  # nbgrader's total, if sent
    release = AssignmentService(context()).release(
        caller, assignment_id, archive_body(), max_score=points
    )
    return jsonify(assignment_id=assignment_id, released=True, **release_json(release)), 201


@bp.delete("/courses/<path:course_id>/assignments/<path:assignment_id>/release")
def unrelease_assignment(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    assignment = AssignmentService(context()).unrelease(caller, assignment_id)
    return jsonify(assignment_id=assignment.name, released=False)


@bp.get("/courses/<path:course_id>/assignments/<path:assignment_id>/archive")
def download_assignment(course_id: str, assignment_id: str):
    caller = caller_for(course_id, ANY_ROLE, release_to_fetch(assignment_id))
    release, handle = AssignmentService(context()).open_current_release(
        caller, assignment_id, record=request.method != "HEAD"
    )
    return blob_response(
        handle, release.size, release.sha256, X_Release_Version=str(release.version)
    )
