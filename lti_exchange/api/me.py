"""Who am I, and the course roster (for instructors)."""

from __future__ import annotations

from flask import jsonify

from lti_exchange.api import bp
from lti_exchange.api.common import ANY_ROLE, STAFF
from lti_exchange.services.members import course_members
from lti_exchange.web.bearer import caller_for, current_claims
from lti_exchange.web.current import get_session


@bp.get("/me")
def whoami():
    claims = current_claims()
    caller = caller_for(claims.course_code, ANY_ROLE)
    return jsonify(
        username=caller.username,
        org_id=caller.org_id,
        course_id=caller.course_code,
        course_title=caller.course_title,
        role=caller.role,
        name=caller.name,
        email=caller.email,
        lms_user_id=caller.lms_user_id,
        expires_at=claims.exp,
    )


@bp.get("/courses/<path:course_id>/members")
def list_members(course_id: str):
    caller = caller_for(course_id, STAFF)
    rows = course_members(get_session(), caller.course_id)
    return jsonify(
        course_id=caller.course_code,
        members=[
            {
                "username": user.username,
                "role": enrolment.role,
                "active": enrolment.active,
                "name": user.name,
                "email": user.email,
                "lms_user_id": user.lms_user_id,
            }
            for enrolment, user in rows
        ],
    )
