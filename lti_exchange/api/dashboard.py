"""The dashboard's JSON twin, due dates and extensions (staff), the student's own view."""

from __future__ import annotations

from flask import jsonify

from lti_exchange.api import bp
from lti_exchange.api.common import ANY_ROLE, STAFF, json_body
from lti_exchange.services.dashboard import (
    course_overview,
    find_student,
    retry_grade,
    student_detail,
)
from lti_exchange.services.due_dates import (
    assignment_due_dates,
    parse_due_input,
    set_due_date,
    set_extension,
)
from lti_exchange.web.bearer import caller_for
from lti_exchange.web.current import get_session


@bp.get("/courses/<path:course_id>/dashboard")
def dashboard(course_id: str):
    caller = caller_for(course_id, STAFF)
    return jsonify(course_overview(get_session(), caller.course).to_json())


@bp.get("/courses/<path:course_id>/dashboard/students/<path:student_id>")
def dashboard_student(course_id: str, student_id: str):
    caller = caller_for(course_id, STAFF)
    user, role = find_student(get_session(), caller.course, student_id)
    return jsonify(student_detail(get_session(), caller.course, user, role).to_json())


@bp.get("/courses/<path:course_id>/my-assignments")
def my_assignments(course_id: str):
    caller = caller_for(course_id, ANY_ROLE)
    detail = student_detail(
        get_session(), caller.course, caller.user, caller.role, released_only=True
    )
    return jsonify(detail.to_json())


@bp.get("/courses/<path:course_id>/assignments/<path:assignment_id>/due-dates")
def due_dates(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    return jsonify(assignment_due_dates(get_session(), caller.course, assignment_id))


@bp.put("/courses/<path:course_id>/assignments/<path:assignment_id>/due-date")
def put_due_date(course_id: str, assignment_id: str):
    caller = caller_for(course_id, STAFF)
    due = parse_due_input(json_body().get("due_at"))
    set_due_date(get_session(), caller.course, caller.user_id, assignment_id, due)
    return jsonify(assignment_due_dates(get_session(), caller.course, assignment_id))


@bp.put("/courses/<path:course_id>/assignments/<path:assignment_id>/extensions/<path:student_id>")
def put_extension(course_id: str, assignment_id: str, student_id: str):
    caller = caller_for(course_id, STAFF)
    due = parse_due_input(json_body().get("due_at"))
    set_extension(get_session(), caller.course, caller.user_id, assignment_id, student_id, due)
    return jsonify(assignment_due_dates(get_session(), caller.course, assignment_id))


@bp.post("/courses/<path:course_id>/grades/retry")
def retry(course_id: str):
    caller = caller_for(course_id, STAFF)
    body = json_body()
    retry_grade(get_session(), caller.course, body.get("assignment_id"), body.get("student_id"))
    return jsonify(
        status="pending", assignment_id=body["assignment_id"], student_id=body["student_id"]
    )
