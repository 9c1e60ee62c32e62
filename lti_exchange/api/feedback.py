"""Feedback: release for many students at once; fetch one's own."""

from __future__ import annotations

from flask import jsonify, request

from lti_exchange.api import bp
from lti_exchange.api.common import (
    ANY_ROLE,
    STAFF,
    archive_body,
    context,
    tar_stream_response,
)
from lti_exchange.services.feedback import FeedbackService
from lti_exchange.web.bearer import caller_for
from lti_exchange.web.body_limits import archive_upload


@bp.post("/courses/<path:course_id>/assignments/<path:assignment_id>/feedback")
@archive_upload
def release_feedback(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    body = archive_body(feedback=True)
    released = FeedbackService(context()).release(caller, assignment_id, body)
    return jsonify(assignment_id=assignment_id, released=released), 201


@bp.get("/courses/<path:course_id>/assignments/<path:assignment_id>/feedback")
def fetch_feedback(course_id: str, assignment_id: str):
    caller = caller_for(course_id, ANY_ROLE)
    chunks = FeedbackService(context()).fetch(
        caller,
        assignment_id,
        student=request.args.get("student_id"),
        record=request.method != "HEAD",
    )
    return tar_stream_response(chunks)
