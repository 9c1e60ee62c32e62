"""What one upload may be: for a client to check a large upload before sending it."""

from __future__ import annotations

from flask import jsonify

from lti_exchange.api import bp
from lti_exchange.api.common import ANY_ROLE
from lti_exchange.web.bearer import caller_for, current_claims
from lti_exchange.web.current import app_objects


@bp.get("/limits")
def upload_limits():
    """The upload limits every archive route enforces (the caller's live enrolment checked, as
    for ``/me``)."""
    claims = current_claims()
    caller_for(claims.course_code, ANY_ROLE)
    limits = app_objects().limits
    return jsonify(
        max_upload_bytes=limits.max_upload_bytes,
        max_unpacked_bytes=limits.max_unpacked_bytes,
        max_archive_members=limits.max_members,
    )
