"""Grades: instructors push nbgrader's scores; everyone staff sees their delivery status."""

from __future__ import annotations

from flask import jsonify, request

from lti_exchange.api import bp
from lti_exchange.api.common import STAFF, context, json_body
from lti_exchange.services.grades import GradeService, parse_grades
from lti_exchange.web.bearer import caller_for


@bp.post("/courses/<path:course_id>/grades")
def push_grades(course_id: str):
    caller = caller_for(course_id, STAFF)
    grades = parse_grades(json_body())
    return jsonify(course_id=caller.course_code, **GradeService(context()).push(caller, grades))


@bp.get("/courses/<path:course_id>/grades")
def grade_status(course_id: str):
    caller = caller_for(course_id, STAFF)
    return jsonify(
        GradeService(context()).status(caller, assignment=request.args.get("assignment_id"))
    )
