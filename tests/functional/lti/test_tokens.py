"""The tokens a launch hands out: access tokens on the API, refresh with rotation, reuse
detection, and revocation by an operator."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import assert_json_error, describe, launched, me
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser

REFRESH_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}


def refresh(live_server, token) -> requests.Response:
    return requests.post(
        f"{live_server.url}/api/v1/token/refresh",
        json={"refresh_token": token},
        headers={"Accept": "application/json"},
        timeout=30,
    )


def test_access_token_works_and_nothing_else_does(live_server, platform, browser):
    body = launched(platform.launch(browser, roles=[LEARNER]))
    assert me(live_server, body["access_token"]).status_code == 200
    assert_json_error(me(live_server, None), (401,))
    assert_json_error(me(live_server, body["refresh_token"]), (401,))  # not an access token


def test_refresh_rotates_the_refresh_token(live_server, platform, browser):
    user = LmsUser.make()
    first = launched(platform.launch(browser, user=user, roles=[INSTRUCTOR]))
    answer = refresh(live_server, first["refresh_token"])
    assert answer.status_code == 200, describe(answer)
    second = answer.json()
    assert set(second) >= REFRESH_KEYS, second
    assert second["token_type"] == "Bearer"
    assert second["expires_in"] > 0
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    profile = me(live_server, second["access_token"])
    assert profile.status_code == 200, describe(profile)
    assert profile.json()["username"] == first["username"]
    assert profile.json()["course_id"] == first["course_id"]
    assert profile.json()["role"] == "Instructor"
    # and the new refresh token works in turn
    third = refresh(live_server, second["refresh_token"])
    assert third.status_code == 200, describe(third)
    assert third.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


def test_reusing_an_old_refresh_token_is_refused(live_server, platform, browser):
    first = launched(platform.launch(browser, roles=[LEARNER]))
    assert refresh(live_server, first["refresh_token"]).status_code == 200
    again = refresh(live_server, first["refresh_token"])
    assert_json_error(again, (401,), ("launch", "lms"))


def test_reuse_ends_the_whole_refresh_family(live_server, platform, browser):
    """A reused refresh token means it leaked: the rotated successor dies with it."""
    first = launched(platform.launch(browser, roles=[LEARNER]))
    successor = refresh(live_server, first["refresh_token"]).json()["refresh_token"]
    assert_json_error(refresh(live_server, first["refresh_token"]), (401,))
    assert_json_error(refresh(live_server, successor), (401,), ("launch", "lms"))
    # a new launch starts a new session
    fresh = launched(platform.launch(browser, roles=[LEARNER]))
    assert refresh(live_server, fresh["refresh_token"]).status_code == 200


@pytest.mark.all_backends  # concurrency: the race lives in the database
def test_concurrent_refreshes_of_one_token_succeed_at_most_once(live_server, platform, browser):
    token = launched(platform.launch(browser, roles=[LEARNER]))["refresh_token"]
    answers: list[requests.Response] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        answers.append(refresh(live_server, token))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) <= 1, [describe(a) for a in answers]
    assert all(s in (200, 401) for s in statuses), [describe(a) for a in answers]


def test_refresh_with_bad_input(live_server):
    assert_json_error(refresh(live_server, "lxr_not-a-token-we-issued"), (401,), ("refresh",))
    assert_json_error(refresh(live_server, ""), (400, 401))
    assert_json_error(refresh(live_server, 12345), (400, 401))
    no_body = requests.post(
        f"{live_server.url}/api/v1/token/refresh",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert_json_error(no_body, (400, 401, 415))


def test_refresh_follows_the_current_enrolment_role(live_server, platform, browser):
    user = LmsUser.make()
    context = LmsContext.make()
    teacher = launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]), "Learner")
    answer = refresh(live_server, teacher["refresh_token"])
    assert answer.status_code == 200, describe(answer)
    assert me(live_server, answer.json()["access_token"]).json()["role"] == "Learner"


def test_operator_revocation(live_server, platform, browser):
    user = LmsUser.make()
    context = LmsContext.make()
    body = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    other_course = launched(platform.launch(browser, user=user, roles=[LEARNER]))
    assert other_course["username"] == body["username"]
    time.sleep(1.1)  # token times are whole seconds
    lti_exchange(
        live_server, "token", "revoke", "--user", body["username"], "--course", body["course_id"]
    )
    refused = refresh(live_server, body["refresh_token"])
    error = assert_json_error(refused, (401,), ("lms",))
    assert "launch" in error["message"].lower(), error
    assert_json_error(me(live_server, body["access_token"]), (401,), ("revoked", "launch"))

    # the user's other course is untouched
    assert me(live_server, other_course["access_token"]).status_code == 200
    assert refresh(live_server, other_course["refresh_token"]).status_code == 200

    # launching again from the LMS gives working tokens
    again = launched(platform.launch(browser, user=user, context=context, roles=[LEARNER]))
    assert me(live_server, again["access_token"]).status_code == 200
    assert refresh(live_server, again["refresh_token"]).status_code == 200


@pytest.mark.all_backends  # timestamp precision differs by database
def test_revocation_covers_an_access_token_minted_the_same_second(live_server, platform, browser):
    """``token revoke`` run moments after a launch must still end that launch's access token.
    (Run in-process so that launch and revocation fall in the same wall-clock second.)"""
    from click.testing import CliRunner

    from lti_exchange.cli import main

    user = LmsUser.make()
    context = LmsContext.make()
    launched(platform.launch(browser, user=user, context=context))  # provision first
    runner = CliRunner(env=live_server.settings_env())
    while time.time() % 1 > 0.2:  # start at the beginning of a second
        time.sleep(0.01)
    body = launched(platform.launch(browser, user=user, context=context))
    done = runner.invoke(
        main, ["token", "revoke", "--user", body["username"], "--course", body["course_id"]]
    )
    assert done.exit_code == 0, done.output
    assert_json_error(me(live_server, body["access_token"]), (401,), ("revoked", "launch"))
    assert_json_error(refresh(live_server, body["refresh_token"]), (401,), ("lms",))
