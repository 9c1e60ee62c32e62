"""The JSON API under ``/api/v1`` (described in docs/openapi.yaml)."""

import re

from flask import Blueprint, request

from lti_exchange.errors import InvalidIdentifier
from lti_exchange.identifiers import IDENTIFIER_RULE

bp = Blueprint("api", __name__, url_prefix="/api/v1")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@bp.before_app_request
def _reject_empty_segments() -> None:
    """``/courses//assignments`` names an empty identifier: say so instead of a bare 404.

    App-wide, because such paths match no route (so blueprint hooks would not run); the same
    goes for control characters, which the URL converters never match.
    """
    if not request.path.startswith(f"{bp.url_prefix}/"):
        return
    if "//" in request.path:
        raise InvalidIdentifier(
            "An identifier in the URL is empty.", details={"path": request.path}
        )
    if _CONTROL.search(request.path):
        raise InvalidIdentifier(
            f"An identifier in the URL contains a control character: use {IDENTIFIER_RULE}.",
            details={"path": request.path, "rule": IDENTIFIER_RULE},
        )


from lti_exchange.api import (  # noqa: E402,F401,I001
    assignments,
    dashboard,
    feedback,
    grades,
    limits,
    me,
    refresh,
    submissions,
)
