"""Refreshing an access token."""

from __future__ import annotations

from flask import jsonify

from lti_exchange.api import bp
from lti_exchange.api.common import json_body, state
from lti_exchange.db import get_session
from lti_exchange.errors import InvalidRequest
from lti_exchange.refresh import rotate


@bp.post("/token/refresh")
def refresh_token():
    token = json_body().get("refresh_token")
    if not isinstance(token, str) or not token or len(token) > 512:
        raise InvalidRequest('Send {"refresh_token": "..."} as a JSON body.')
    return jsonify(rotate(state(), get_session(), token))
