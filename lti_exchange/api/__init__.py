"""The JSON API under ``/api/v1`` (described in docs/openapi.yaml)."""

from flask import Blueprint, request

from lti_exchange.errors import InvalidIdentifier

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _reject_empty_segments() -> None:
    """``/courses//assignments`` names an empty identifier: say so instead of a bare 404."""
    if "//" in request.path:
        raise InvalidIdentifier(
            "An identifier in the URL is empty.", details={"path": request.path}
        )


from lti_exchange.api import assignments, feedback, me, submissions  # noqa: E402,F401
