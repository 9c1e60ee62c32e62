"""Refreshing an access token."""

from __future__ import annotations

from flask import jsonify

from lti_exchange.api import bp
from lti_exchange.api.common import json_body
from lti_exchange.errors import InvalidRequest
from lti_exchange.services.retry import run_with_retry
from lti_exchange.tokens.refresh import rotate
from lti_exchange.web.current import app_objects, get_session


@bp.post("/token/refresh")
def refresh_token():
    token = json_body().get("refresh_token")
    if not isinstance(token, str) or not token or len(token) > 512:
        raise InvalidRequest('Send {"refresh_token": "..."} as a JSON body.')
    session = get_session()
    # Concurrent refreshes of one token can deadlock on its row (InnoDB): run the whole
    # rotation again; the rerun then sees the token spent and answers 401.
    pair = run_with_retry(
        session, lambda: rotate(app_objects(), session, token), what="refresh your session"
    )
    response = jsonify(pair)
    # Tokens: no cache (browser, proxy) may keep them (RFC 6749 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
