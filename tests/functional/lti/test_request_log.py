"""Refusals leave one log line naming the request's id (``X-Request-Id``) and no secret."""

from __future__ import annotations

import pytest
import requests

from tests.functional.lti.helpers import launched
from tests.lms.platform import LEARNER, LmsUser
from tests.support import log_lines

pytestmark = pytest.mark.one_backend


def test_a_refused_api_request_is_logged_once_with_its_id_and_without_the_token(live_server):
    secret = "not-a-jwt-but-still-a-secret-4f1c2a"
    answer = live_server.api(
        "GET", "/me", token=secret, headers={"X-Request-Id": "req-unauth-7d3e"}
    )
    assert answer.status_code == 401
    assert answer.headers["X-Request-Id"] == "req-unauth-7d3e"
    lines = log_lines(live_server, "req-unauth-7d3e")
    refusals = [line for line in lines if "refused" in line]
    assert len(refusals) == 1, lines
    assert "401" in refusals[0] and "/api/v1/me" in refusals[0], refusals
    assert secret not in live_server.log_path.read_text(errors="replace")


def test_an_unusable_request_id_is_replaced_by_a_fresh_one(live_server):
    sent = "x" * 200
    answer = requests.get(f"{live_server.url}/healthz", headers={"X-Request-Id": sent}, timeout=30)
    got = answer.headers["X-Request-Id"]
    assert got != sent and len(got) == 32 and int(got, 16) >= 0
    again = requests.get(f"{live_server.url}/healthz", timeout=30).headers["X-Request-Id"]
    assert again != got


def test_a_forbidden_request_is_logged_with_its_id(live_server, course):
    token = live_server.issue_token("log-learner", course)
    answer = live_server.api(
        "GET", f"/courses/{course}/members", token=token, headers={"X-Request-Id": "req-403-a1"}
    )
    assert answer.status_code == 403
    lines = [line for line in log_lines(live_server, "req-403-a1") if "refused" in line]
    assert len(lines) == 1 and "403 role_forbidden" in lines[0], lines
    assert token not in live_server.log_path.read_text(errors="replace")


def test_a_refused_launch_is_logged_with_its_id(live_server, platform, browser):
    browser.headers["X-Request-Id"] = "req-launch-9b"
    answer = platform.launch(browser, user=LmsUser.make(), roles=[LEARNER], context=None)
    assert answer.status_code == 400, answer.text
    # three lines carry the id: the login's access line, the refusal, the launch's access line
    # (written after the answer: wait for all three)
    lines = log_lines(live_server, "req-launch-9b", at_least=3)
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 1 and "lti_launch_unusable" in refused[0], lines
    # the access log line of the same request carries the id too
    assert any("POST /lti/launch 400" in line for line in lines), lines


def test_refresh_token_reuse_is_logged_with_its_id_and_without_the_token(
    live_server, platform, browser
):
    first = launched(platform.launch(browser, user=LmsUser.make(), roles=[LEARNER]))
    url = f"{live_server.url}/api/v1/token/refresh"
    body = {"refresh_token": first["refresh_token"]}
    assert requests.post(url, json=body, timeout=30).status_code == 200
    replay = requests.post(url, json=body, headers={"X-Request-Id": "req-reuse-5c"}, timeout=30)
    assert replay.status_code == 401
    lines = log_lines(live_server, "req-reuse-5c", at_least=2)
    revoked = [line for line in lines if "lti_exchange.tokens.refresh" in line]
    assert len(revoked) == 1 and "every session of enrolment" in revoked[0], lines
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 1 and "401 refresh_token_reused" in refused[0], lines
    log = live_server.log_path.read_text(errors="replace")
    assert first["refresh_token"] not in log and first["access_token"] not in log
