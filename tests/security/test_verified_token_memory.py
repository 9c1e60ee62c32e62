"""Workers remember the access tokens they verified (``tokens/access.py``), yet a revocation or
an ended enrolment still refuses the very next request: the enrolment is read on every request.
One kept-alive connection keeps all requests on one worker, whose memory holds the token."""

from __future__ import annotations

import requests

from lti_exchange.tokens.refresh import revoke_enrolments
from tests.factories import find_enrolment
from tests.support import assert_error


def _me(http: requests.Session, live_server, token: str) -> requests.Response:
    return http.get(
        f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_a_remembered_token_is_refused_right_after_revocation(live_server, course):
    token = live_server.issue_token("remembered", course)
    state = live_server.state()
    with requests.Session() as http:
        for _ in range(5):  # verified once, then answered from the worker's memory
            assert _me(http, live_server, token).status_code == 200
        with state.session_factory() as session:
            revoke_enrolments(session, [find_enrolment(session, "remembered", course).id])
            session.commit()
        assert_error(_me(http, live_server, token), 401, "revoked", "revoked")


def test_a_remembered_token_is_refused_right_after_the_enrolment_ends(live_server, course):
    token = live_server.issue_token("leaver", course)
    state = live_server.state()
    with requests.Session() as http:
        for _ in range(5):
            assert _me(http, live_server, token).status_code == 200
        with state.session_factory() as session:
            find_enrolment(session, "leaver", course).active = False
            session.commit()
        assert_error(_me(http, live_server, token), 403, "enrolment_inactive")
