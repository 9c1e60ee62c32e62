"""Launches bound to the browser (login CSRF), checked over HTTP: the platform-storage login page,
the server-side checks of the storage proof, and the new-window page.

The page scripts themselves run in a real browser in ``tests/browser/``; here a
``requests.Session`` plays the browser and does what the scripts do.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
import requests

from lti_exchange.lti.headers import origin
from tests.functional.lti.helpers import assert_html_error, describe, launched
from tests.lms.platform import ACCEPT_BROWSER, ACCEPT_JSON, LEARNER, LaunchRecord, parse_form

TARGET = "lti_storage_frame"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Accept": ACCEPT_BROWSER}


def page_json(page: str, element_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page)
    assert found, page[:3000]
    return json.loads(found.group(1))


def storage_login(platform, session: requests.Session) -> tuple[requests.Response, dict]:
    """The login with ``lti_storage_target``: the tool's page and its configuration."""
    answer = platform.launch(session, login={"lti_storage_target": TARGET}, accept_json=False)
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["Content-Type"].startswith("text/html"), describe(answer)
    return answer, page_json(answer.text, "lti-login")


def to_platform(platform, session: requests.Session, config: dict) -> LaunchRecord:
    """What the login page does after ``lti.put_data``: go to the platform; the platform answers
    its auto-submitting id_token form."""
    page = session.get(config["redirect_url"], headers={"Accept": ACCEPT_BROWSER}, timeout=60)
    assert page.status_code == 200, describe(page)
    form = parse_form(page.text)
    record = LaunchRecord(login_params={}, accept_json=False)
    record.form_action, record.form_fields = form["action"], dict(form["fields"])
    return record


def cookie_less_launch(platform, record: LaunchRecord) -> requests.Response:
    """The platform's form posted from a frame that drops the tool's cookies."""
    with requests.Session() as frame:
        return platform.post_form(frame, record, accept_json=False)


def bind_page(platform) -> tuple[dict, str]:
    """A storage login, then a cookie-less launch: the storage check page's proof fields."""
    with requests.Session() as browser:
        _login, config = storage_login(platform, browser)
        record = to_platform(platform, browser, config)
    answer = cookie_less_launch(platform, record)
    assert answer.status_code == 200, describe(answer)
    assert "access_token" not in answer.text and "refresh_token" not in answer.text
    check = page_json(answer.text, "lti-bind")
    form = parse_form(answer.text)
    assert form["action"] == platform.tool_url + "/lti/launch/bind", form
    return {"launch_id": form["fields"]["launch_id"], "state": check["state"]}, answer.text


def bind(platform, proof: dict, headers: dict | None = None) -> requests.Response:
    with requests.Session() as frame:
        return frame.post(
            platform.tool_url + "/lti/launch/bind",
            data=proof,
            headers=SAME_ORIGIN if headers is None else headers,
            timeout=60,
        )


def assert_landing(answer: requests.Response) -> None:
    assert answer.status_code == 200, describe(answer)
    assert "You are signed in to the nbgrader exchange" in answer.text, answer.text[:2000]
    assert "refresh_token" in answer.text  # the tokens are on the page


def assert_bind_refused(answer: requests.Response, status: int, code: str) -> None:
    page = assert_html_error(answer, (status,))
    assert code in page, page[:2000]
    assert "refresh_token" not in page


# --- the login page ---------------------------------------------------------------------------
def test_login_with_platform_storage_answers_the_storage_page(platform, browser):
    answer, config = storage_login(platform, browser)
    assert config["target"] == TARGET
    assert config["origin"] == origin(platform.auth_login_url)  # postMessage target origin
    redirect = urlsplit(config["redirect_url"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == platform.auth_login_url
    assert f"state={config['state']}" in redirect.query
    assert f"nonce={config['nonce']}" in redirect.query
    assert "lti.put_data" in answer.text
    # the state cookie is set as well: where cookies work, they bind the launch
    assert browser.cookies.get(f"lti1p3-{config['state']}") == config["state"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert origin(platform.auth_login_url) in answer.headers["Content-Security-Policy"]


def test_login_without_platform_storage_redirects(platform, browser):
    answer = platform.launch(browser, login={"lti_storage_target": "bad name<>"})
    launched(answer)  # an unusable frame name: the cookie path, as without the parameter


def test_with_the_cookie_a_storage_login_launches_directly(platform, browser):
    _login, config = storage_login(platform, browser)
    record = to_platform(platform, browser, config)
    launched(platform.post_form(browser, record, accept_json=True))


# --- the storage proof --------------------------------------------------------------------------
def test_storage_bound_launch_completes_with_its_proof(platform):
    proof, page = bind_page(platform)
    assert 'id="new-window"' in page and "hidden" in page  # the fallback, shown on failure
    assert_landing(bind(platform, proof))


@pytest.mark.all_backends  # single-use: the key-value store's atomic pop
def test_replayed_proof_is_refused(platform):
    proof, _page = bind_page(platform)
    assert_landing(bind(platform, proof))
    assert_bind_refused(bind(platform, proof), 401, "lti_bind_invalid")


def test_wrong_state_is_refused_and_spends_the_proof(platform):
    proof, _page = bind_page(platform)
    assert_bind_refused(bind(platform, {**proof, "state": "state-forged"}), 401, "lti_bind_invalid")
    assert_bind_refused(bind(platform, proof), 401, "lti_bind_invalid")


def test_another_launchs_proof_is_refused(platform):
    one, _page = bind_page(platform)
    two, _page = bind_page(platform)
    assert_bind_refused(
        bind(platform, {"launch_id": one["launch_id"], "state": two["state"]}),
        401,
        "lti_bind_invalid",
    )
    assert_landing(bind(platform, two))


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},  # a form another site made the browser post
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://attacker.example"},  # a browser without fetch metadata
        {"Origin": "null"},
        {},
    ],
)
def test_proof_from_another_site_is_refused(platform, headers):
    proof, _page = bind_page(platform)
    assert_bind_refused(
        bind(platform, proof, {**headers, "Accept": ACCEPT_BROWSER}), 403, "lti_bind_cross_site"
    )
    assert_landing(bind(platform, proof))  # refused before it was spent


def test_proof_with_our_origin_and_no_fetch_metadata_is_accepted(platform):
    proof, _page = bind_page(platform)
    assert_landing(bind(platform, proof, {"Origin": platform.tool_url, "Accept": ACCEPT_BROWSER}))


def test_malformed_proof_is_refused(platform):
    assert_bind_refused(bind(platform, {"state": "state-x"}), 400, "lti_bind_invalid")
    assert_bind_refused(
        bind(platform, {"launch_id": "lti1p3-launch-../../x", "state": "s"}),
        400,
        "lti_bind_invalid",
    )


def test_storage_check_page_headers(platform):
    with requests.Session() as browser:
        _login, config = storage_login(platform, browser)
        record = to_platform(platform, browser, config)
    answer = cookie_less_launch(platform, record)
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["Referrer-Policy"] == "same-origin"  # so the proof names our Origin
    assert answer.headers["Cache-Control"] == "no-store"
    assert origin(platform.auth_login_url) in answer.headers["Content-Security-Policy"]
    check = page_json(answer.text, "lti-bind")
    assert check == {"target": TARGET, "origin": origin(platform.auth_login_url), **check}


# --- neither cookie nor storage: a new window ------------------------------------------------
def test_cookie_less_launch_without_storage_offers_a_new_window(platform, browser):
    answer = platform.launch(
        browser, accept_json=False, form={"state": lambda v: (browser.cookies.clear(), v)[1]}
    )
    assert answer.status_code == 200, describe(answer)
    assert "Open the assignment in a new window" in answer.text
    assert "refresh_token" not in answer.text and "lti-bind" not in answer.text
    form = parse_form(answer.text)
    assert form["action"] == platform.tool_url + "/lti/login"
    assert 'target="_blank"' in answer.text
    sent = answer.lti.login_params
    assert form["fields"] == sent  # the platform's own login parameters, kept server-side
    # The new window is top-level: its cookie works, and the login runs again from the start.
    with requests.Session() as window:
        again = platform.launch(window, login=form["fields"])
    launched(again, "Learner")
    assert platform.auth_requests[-1]["login_hint"] == sent["login_hint"]


def test_cookie_less_json_launch_is_refused(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], form={"state": lambda v: (browser.cookies.clear(), v)[1]}
    )
    assert answer.status_code == 401, describe(answer)
    assert answer.headers["Content-Type"].startswith(ACCEPT_JSON)
    error = answer.json()["error"]
    assert error["code"] == "lti_launch_unbound", error
    assert "cookie" in error["message"]
    assert "access_token" not in answer.text
