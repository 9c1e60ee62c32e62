"""Ending sessions ends them: a replayed refresh token and ``token revoke`` kill the ACCESS
tokens already issued for the enrolment too, and its dashboard page sessions (the hidden form
field of the LMS pages), while tokens and pages opened afterwards (a new launch, a new ``token
issue``, even in the same millisecond) keep working. Runs on every backend: the revocation
instant is stored in the database (microseconds on SQLite, MariaDB, PostgreSQL)."""

# ruff: noqa: F811 - the LTI fixtures are imported by name

from __future__ import annotations

import re

import pytest
import requests
from click.testing import CliRunner

from lti_exchange.cli import main
from tests.factories import find_enrolment
from tests.functional.lti.conftest import browser, platform  # noqa: F401 - fixtures
from tests.functional.lti.helpers import describe, launched, me
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser
from tests.support import assert_error

# Revocation compares timestamps: precision differs by database.
pytestmark = pytest.mark.all_backends


def refresh(live_server, token: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/api/v1/token/refresh", json={"refresh_token": token}, timeout=30
    )


def page_session(answer: requests.Response) -> str:
    """The dashboard pages' session of an HTML launch (the landing page's hidden field)."""
    assert answer.status_code == 200, describe(answer)
    found = re.search(r'name="page_session" value="([^"]+)"', answer.text)
    assert found, answer.text[:3000]
    return found.group(1)


def page(live_server, path: str, session: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/lti/{path}", data={"page_session": session}, timeout=30
    )


def test_replayed_refresh_token_ends_the_access_tokens_already_issued(
    live_server, platform, browser
):
    user, context = LmsUser.make(), LmsContext.make()
    first = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    rotated = refresh(live_server, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert me(live_server, first["access_token"]).status_code == 200
    assert me(live_server, second["access_token"]).status_code == 200

    replay = refresh(live_server, first["refresh_token"])  # the old token leaked
    assert_error(replay, 401, "refresh_token_reused", "sessions", "ended", "launch")

    # "all your sessions in this course have been ended" is true: both access tokens are dead
    for access in (first["access_token"], second["access_token"]):
        assert_error(me(live_server, access), 401, "revoked", "revoked")
    assert_error(refresh(live_server, second["refresh_token"]), 401)

    # a new launch right away starts a working session
    fresh = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    assert me(live_server, fresh["access_token"]).status_code == 200
    renewed = refresh(live_server, fresh["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert me(live_server, renewed.json()["access_token"]).status_code == 200


def test_replay_leaves_the_users_other_courses_alone(live_server, platform, browser):
    user = LmsUser.make()
    here = launched(platform.launch(browser, user=user, context=LmsContext.make()))
    there = launched(platform.launch(browser, user=user, context=LmsContext.make()))
    assert refresh(live_server, here["refresh_token"]).status_code == 200
    assert_error(refresh(live_server, here["refresh_token"]), 401, "refresh_token_reused")
    assert_error(me(live_server, here["access_token"]), 401, "revoked")
    assert me(live_server, there["access_token"]).status_code == 200
    assert refresh(live_server, there["refresh_token"]).status_code == 200


def test_token_revoke_kills_outstanding_access_tokens(live_server, platform, browser):
    user, context = LmsUser.make(), LmsContext.make()
    body = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    runner = CliRunner(env=live_server.settings_env())
    issued = runner.invoke(
        main,
        ["token", "issue", "--org", str(body["org_id"]), "--username", body["username"],
         "--course", body["course_id"], "--role", "Learner"],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    operator_token = issued.stdout.strip()
    assert me(live_server, operator_token).status_code == 200

    done = runner.invoke(
        main, ["token", "revoke", "--user", body["username"], "--course", body["course_id"]]
    )
    assert done.exit_code == 0, done.output
    for access in (body["access_token"], operator_token):
        assert_error(me(live_server, access), 401, "revoked", "revoked")
    assert_error(refresh(live_server, body["refresh_token"]), 401, "revoked")

    # issued right after the revocation (same millisecond or not): these work
    again = runner.invoke(
        main,
        ["token", "issue", "--org", str(body["org_id"]), "--username", body["username"],
         "--course", body["course_id"], "--role", "Learner"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert me(live_server, again.stdout.strip()).status_code == 200
    fresh = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    assert me(live_server, fresh["access_token"]).status_code == 200
    assert refresh(live_server, fresh["refresh_token"]).status_code == 200


def test_revocation_is_exact_to_the_millisecond(live_server, course):
    """Minted just before ``revoke_enrolments`` → revoked; minted just after, with no pause
    (usually the same millisecond) → accepted; the instant survives the database round trip."""
    from lti_exchange.tokens.refresh import revoke_enrolments, token_pair

    live_server.issue_token("ms-user", course)
    state = live_server.state()
    for _ in range(5):
        with state.session_factory() as session:
            enrolment = find_enrolment(session, "ms-user", course)
            before = token_pair(state, session, enrolment, with_refresh=False)["access_token"]
            revoke_enrolments(session, [enrolment.id])
            session.commit()
            session.refresh(enrolment)
            after = token_pair(state, session, enrolment)
            session.commit()
        assert_error(me(live_server, before), 401, "revoked")
        assert me(live_server, after["access_token"]).status_code == 200
        assert refresh(live_server, after["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    ("ending", "role", "path"),
    [("token revoke", LEARNER, "my-assignments"), ("refresh reuse", INSTRUCTOR, "dashboard")],
    ids=["token-revoke-learner", "refresh-reuse-instructor"],
)
def test_dashboard_page_sessions_end_with_the_enrolments_sessions(
    live_server, platform, browser, ending, role, path
):
    user, context = LmsUser.make(), LmsContext.make()
    body = launched(platform.launch(browser, user=user, context=context, roles=[role]))
    html = {"user": user, "context": context, "roles": [role], "accept_json": False}
    opened = page_session(platform.launch(browser, **html))
    assert page(live_server, path, opened).status_code == 200

    if ending == "token revoke":
        done = CliRunner(env=live_server.settings_env()).invoke(
            main, ["token", "revoke", "--user", body["username"], "--course", body["course_id"]]
        )
        assert done.exit_code == 0, done.output
    else:
        assert refresh(live_server, body["refresh_token"]).status_code == 200
        assert_error(refresh(live_server, body["refresh_token"]), 401, "refresh_token_reused")

    refused = page(live_server, path, opened)
    assert refused.status_code == 401, refused.text[:2000]
    assert "Error 401 (revoked)" in refused.text
    assert "have been ended" in refused.text and "Open the tool again" in refused.text

    # A launch afterwards opens a page session that works; the old one stays dead.
    fresh = page_session(platform.launch(browser, **html))
    assert fresh != opened
    assert page(live_server, path, fresh).status_code == 200
    assert page(live_server, path, opened).status_code == 401


def test_page_session_revocation_is_exact_to_the_millisecond(live_server, course):
    """Opened just before ``revoke_enrolments`` → refused; opened just after with the launch's
    view of ``tokens_not_before``, with no pause (usually the same millisecond) → accepted."""
    from lti_exchange.lti.dashboard_views import open_page_session
    from lti_exchange.lti.store import DatabaseStore
    from lti_exchange.tokens.refresh import revoke_enrolments

    live_server.issue_token("ms-page-user", course)
    state = live_server.state()
    kv = DatabaseStore(state.session_factory)
    for _ in range(5):
        with state.session_factory() as session:
            enrolment = find_enrolment(session, "ms-page-user", course)
            ids = (enrolment.user_id, enrolment.course_id)
            before = open_page_session(*ids, kv, not_before=enrolment.tokens_not_before)
            revoke_enrolments(session, [enrolment.id])
            session.commit()
            session.refresh(enrolment)
            after = open_page_session(*ids, kv, not_before=enrolment.tokens_not_before)
        refused = page(live_server, "my-assignments", before)
        assert refused.status_code == 401 and "(revoked)" in refused.text, refused.text[:2000]
        assert page(live_server, "my-assignments", after).status_code == 200
