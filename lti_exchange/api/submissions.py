"""Submissions: submit, list, download one, remove, collect many in one streamed archive."""

from __future__ import annotations

from typing import BinaryIO

from flask import jsonify, request

from lti_exchange.api import bp
from lti_exchange.api.common import (
    ANY_ROLE,
    REPLAYED_HEADER,
    STAFF,
    archive_body,
    blob_response,
    bool_arg,
    context,
    idempotency_key,
    json_body,
    tar_stream_response,
)
from lti_exchange.errors import InvalidRequest
from lti_exchange.services.authorisation import Caller
from lti_exchange.services.submissions import (
    MAX_COLLECT_IDS,
    MAX_ID,
    SubmissionService,
    submission_json,
    submit_target,
)
from lti_exchange.timestamps import parse_timestamp
from lti_exchange.web.bearer import caller_for
from lti_exchange.web.body_limits import archive_upload


@bp.post("/courses/<path:course_id>/assignments/<path:assignment_id>/submissions")
@archive_upload
def submit(course_id: str, assignment_id: str):
    caller = caller_for(course_id, ANY_ROLE, submit_target(assignment_id))
    key = idempotency_key(request.environ)
    body, replayed = store_submission(caller, assignment_id, archive_body(), key)
    if replayed:  # the first attempt's submission, as its 201 said
        return jsonify(body), 200, {REPLAYED_HEADER: "true"}
    return jsonify(body), 201


def store_submission(
    caller: Caller, name: str, body: BinaryIO, key: str | None
) -> tuple[dict, bool]:
    """Store ``body`` as ``caller``'s submission to ``name``: its JSON, and whether it repeated
    a stored one (the same ``key``). Shared with ``web.hot_routes``."""
    receipt = SubmissionService(context()).submit(caller, name, body, key)
    answer = submission_json(
        receipt.submission, receipt.assignment_name, caller, with_feedback=False
    )
    answer["release_notebooks"] = receipt.release_notebooks
    return answer, receipt.replayed


@bp.get("/courses/<path:course_id>/submissions")
def list_submissions(course_id: str):
    caller = caller_for(course_id, ANY_ROLE)
    rows = SubmissionService(context()).list(
        caller,
        assignment=request.args.get("assignment_id"),
        student=request.args.get("student_id"),
        include_removed=bool_arg("include_removed"),
    )
    return jsonify(
        course_id=caller.course_code,
        submissions=[submission_json(s, a.name, u) for s, a, u in rows],
    )


@bp.get("/courses/<path:course_id>/submissions/<int:submission_id>")
def get_submission(course_id: str, submission_id: int):
    caller = caller_for(course_id, ANY_ROLE)
    submission, assignment, user = SubmissionService(context()).get(caller, submission_id)
    return jsonify(submission_json(submission, assignment.name, user))


@bp.get("/courses/<path:course_id>/submissions/<int:submission_id>/archive")
def download_submission(course_id: str, submission_id: int):
    caller = caller_for(course_id, ANY_ROLE)
    submission, handle = SubmissionService(context()).open_archive(caller, submission_id)
    return blob_response(handle, submission.size, submission.sha256)


@bp.delete("/courses/<path:course_id>/submissions/<int:submission_id>")
def remove_submission(course_id: str, submission_id: int):
    caller = caller_for(course_id, STAFF)
    submission = SubmissionService(context()).remove(caller, submission_id)
    return jsonify(id=submission.id, removed=True)


@bp.post("/courses/<path:course_id>/assignments/<path:assignment_id>/collection")
def collect(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    body = json_body()
    ids = body.get("submission_ids")
    received = body.get("received_ids")
    students = body.get("student_ids")
    since = body.get("since")
    for key, value in (("submission_ids", ids), ("received_ids", received)):
        if value is not None and (
            not isinstance(value, list)
            or len(value) > MAX_COLLECT_IDS
            or not all(type(i) is int and 0 < i <= MAX_ID for i in value)
        ):
            raise InvalidRequest(
                f"'{key}' must be a list of at most {MAX_COLLECT_IDS} submission ids "
                f"(integers from 1 to {MAX_ID})."
            )
    if students is not None and (
        not isinstance(students, list)
        or len(students) > MAX_COLLECT_IDS
        or not all(isinstance(s, str) for s in students)
    ):
        raise InvalidRequest(
            f"'student_ids' must be a list of at most {MAX_COLLECT_IDS} student ids."
        )
    if since is not None and not isinstance(since, str):
        raise InvalidRequest("'since' must be a timestamp string.")
    service = SubmissionService(context())
    chosen = service.select_for_collection(
        caller,
        assignment_id,
        submission_ids=ids,
        students=students,
        since=parse_timestamp(since) if since else None,
    )
    return tar_stream_response(service.collect(caller, assignment_id, chosen, received or ()))
