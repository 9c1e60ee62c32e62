"""The JSON API under ``/api/v1`` (described in docs/openapi.yaml)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from lti_exchange.api import assignments, feedback, me, submissions  # noqa: E402,F401
