"""Pages: who may frame them, referrers, caching, MIME sniffing; deep-link ``max_score``; and
the URLs we send to an LMS never come from the ``Host`` header.

LMS-facing pages (landing page with tokens, deep-link chooser and response form, the LTI error
page shown inside the LMS frame) may be framed by the registered LMS origins only; everything
else by nobody.
"""

from __future__ import annotations

# ruff: noqa: F811 - the LTI fixtures are imported by name
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from lti_exchange.lti.headers import origin
from tests.factories import registered_app
from tests.functional.lti.conftest import browser, make_platform, platform  # noqa: F401
from tests.functional.lti.helpers import launched
from tests.functional.lti.test_deep_linking import deep_link_launch, respond
from tests.functional.test_handoff_extension import notebook  # noqa: F401 - fixture
from tests.lms.platform import INSTRUCTOR, LmsContext, LmsUser
from tests.support import assert_error

# Headers do not depend on the database.
pytestmark = pytest.mark.one_backend


def frame_ancestors(answer) -> list[str]:
    policy = answer.headers.get("Content-Security-Policy", "")
    for directive in policy.split(";"):
        name, _, value = directive.strip().partition(" ")
        if name == "frame-ancestors":
            return value.split()
    raise AssertionError(f"no frame-ancestors in {policy!r}")


def assert_lms_page(answer, lms) -> None:
    """Framable by this LMS's origins only; no referrer, no caching, no sniffing."""
    ancestors = frame_ancestors(answer)
    assert set(ancestors) >= {origin(lms.issuer), origin(lms.auth_login_url)}, ancestors
    assert "*" not in " ".join(ancestors) and "'none'" not in ancestors, ancestors
    assert all(a.startswith(("https://", "http://")) for a in ancestors), ancestors
    assert "X-Frame-Options" not in answer.headers  # would stop the LMS frame in old browsers
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def assert_never_framed(answer) -> None:
    assert frame_ancestors(answer) == ["'none'"], answer.headers
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


# --- LMS pages --------------------------------------------------------------------------------


def test_landing_page_may_be_framed_by_the_lms_only(live_server, platform, browser):
    answer = platform.launch(browser, accept_json=False)
    assert answer.status_code == 200, answer.text[:2000]
    assert "access_token" in answer.text  # the page holds tokens
    assert_lms_page(answer, platform)


def test_landing_page_of_one_lms_is_not_framable_by_another(
    live_server, platform, make_platform, browser
):
    other = make_platform()
    answer = other.launch(browser, accept_json=False)
    assert answer.status_code == 200, answer.text[:2000]
    assert_lms_page(answer, other)
    assert origin(platform.issuer) not in frame_ancestors(answer)


def test_deep_link_pages_may_be_framed_by_the_lms_only(live_server, platform, browser):
    user, context = LmsUser.make(), LmsContext.make()
    launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    chooser = deep_link_launch(platform, browser, user, context, accept_json=False)
    assert chooser.status_code == 200, chooser.text[:2000]
    assert "deep_link_token" in chooser.text
    assert_lms_page(chooser, platform)

    token = chooser.text.split('name="deep_link_token" value="', 1)[1].split('"', 1)[0]
    form = respond(live_server, token, "ps1", 10, accept_json=False)
    assert form.status_code == 200, form.text[:2000]
    assert_lms_page(form, platform)


def test_launch_error_page_is_framable_by_lms_origins_only(live_server, platform, browser):
    """Shown inside the LMS frame when a launch fails: it holds no token, and with
    frame-ancestors 'none' the user would see a blank frame instead of what to do."""
    answer = platform.launch(
        browser, accept_json=False, login={"target_link_uri": "https://evil.example/lti"}
    )
    assert answer.status_code == 400, answer.text[:2000]
    assert answer.headers["Content-Type"].startswith("text/html")
    ancestors = frame_ancestors(answer)
    assert origin(platform.issuer) in ancestors and "'none'" not in ancestors
    assert "*" not in " ".join(ancestors)
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_refreshed_tokens_are_never_cached(live_server, platform, browser):
    tokens = launched(platform.launch(browser))
    answer = requests.post(
        live_server.url + "/api/v1/token/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["access_token"] != tokens["access_token"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"


def test_api_and_json_errors_are_never_framed(live_server):
    for answer in (
        live_server.api("GET", "me"),
        live_server.api("GET", "me", "not-a-token"),
        requests.get(live_server.url + "/healthz", timeout=30),
        requests.get(live_server.url + "/lti/config", timeout=30),
        requests.get(live_server.url + "/no/such/page", timeout=30),
    ):
        assert_never_framed(answer)


def test_jupyter_handoff_page_is_never_framed(live_server, notebook, course):
    page = notebook.server.get("/lti-exchange/handoff")
    assert page.status_code == 200, page.text[:2000]
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"


# --- deep-link max_score ----------------------------------------------------------------------


def test_deep_link_max_score_must_be_a_sane_number(live_server, platform, browser):
    user, context = LmsUser.make(), LmsContext.make()
    launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    offer = deep_link_launch(platform, browser, user, context).json()
    token = offer["deep_link_token"]
    url = f"{live_server.url}/lti/deep-link"
    accept = {"Accept": "application/json"}
    json_headers = {**accept, "Content-Type": "application/json"}
    # JSON literals and form fields; 10**400 overflows float()
    literals = ["1e400", "1" + "0" * 400, "-5", "0", "1e7", "true", "[10]",
                '{"x": 1}', '"NaN"', '"inf"', '"-1"', '"ten"']  # fmt: skip
    for literal in literals:
        body = f'{{"deep_link_token": "{token}", "assignment_id": "ps1", "max_score": {literal}}}'
        answer = requests.post(url, data=body, headers=json_headers, timeout=30)
        assert_error(answer, 400, "invalid_max_score", "max_score")
    # Python's parser takes NaN and Infinity; JSON has no such numbers (as on the API)
    for literal in ["NaN", "Infinity", "-Infinity"]:
        body = f'{{"deep_link_token": "{token}", "assignment_id": "ps1", "max_score": {literal}}}'
        answer = requests.post(url, data=body, headers=json_headers, timeout=30)
        assert_error(answer, 400, "invalid_request", "not valid JSON", literal)
    for value in ["NaN", "nan", "inf", "-Infinity", "1e309", "-1", "0", "1e7", "ten", " "]:
        form = {"deep_link_token": token, "assignment_id": "ps1", "max_score": value}
        answer = requests.post(url, data=form, headers=accept, timeout=30)
        assert_error(answer, 400, "invalid_max_score", "max_score")
    # a bad value did not spend the single-use session; a good one works
    good = respond(live_server, token, "ps1", "12.5")
    assert good.status_code == 200, good.text
    claims = platform.verify_deep_link_response(good.json()["jwt"])
    item = claims["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"][0]
    assert item["lineItem"]["scoreMaximum"] == 12.5


# --- URLs sent to the LMS never come from Host ------------------------------------------------


def test_forged_host_does_not_change_the_urls_sent_to_the_lms(live_server, platform):
    forged = {"Host": "evil.example.com", "X-Forwarded-Host": "evil.example.com"}
    answer = requests.get(
        live_server.url + "/lti/login",
        params={
            "iss": platform.issuer,
            "client_id": platform.client_id,
            "login_hint": "u1",
            "target_link_uri": live_server.url + "/lti/launch",
        },
        headers=forged,
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:2000]
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["redirect_uri"] == [live_server.url + "/lti/launch"]
    config = requests.get(live_server.url + "/lti/config", headers=forged, timeout=30).json()
    assert config["public_jwk_url"] == live_server.url + "/lti/jwks"
    assert config["redirect_uris"] == [live_server.url + "/lti/launch"]
    assert "evil" not in str(config)
    # a target on the forged host is not "a URL of this tool"
    evil = requests.get(
        live_server.url + "/lti/login",
        params={"iss": platform.issuer, "client_id": platform.client_id, "login_hint": "u1",
                "target_link_uri": "http://evil.example.com/lti/launch"},
        headers={**forged, "Accept": "application/json"},
        allow_redirects=False,
        timeout=30,
    )  # fmt: skip
    assert_error(evil, 400, "invalid_target_link_uri")


@pytest.fixture
def app_with(tmp_path):
    """An in-process app with these settings and one registration."""

    def make(**env: str):
        return registered_app(
            tmp_path / "data", auth_login_url="https://login.example.edu:8443/auth", **env
        )

    return make


def test_without_a_base_url_the_bind_address_names_the_tool(app_with):
    client = app_with(bind="127.0.0.1:9123")
    config = client.get("/lti/config", headers={"Host": "evil.example.com"}).get_json()
    assert config["target_link_uri"] == "http://127.0.0.1:9123/lti/launch"
    assert config["public_jwk_url"] == "http://127.0.0.1:9123/lti/jwks"
    login = client.get(
        "/lti/login",
        query_string={"iss": "https://lms.example.edu", "client_id": "tool-1",
                      "login_hint": "u", "target_link_uri": "http://127.0.0.1:9123/lti/launch"},
        headers={"Host": "evil.example.com"},
    )  # fmt: skip
    assert login.status_code == 302, login.get_data(as_text=True)
    query = parse_qs(urlsplit(login.headers["Location"]).query)
    assert query["redirect_uri"] == ["http://127.0.0.1:9123/lti/launch"]


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "[::]:8000", "unix:/tmp/x.sock", ""])
def test_without_a_base_url_a_wildcard_bind_refuses_clearly(app_with, bind):
    client = app_with(bind=bind)
    answer = client.get(
        "/lti/config", headers={"Host": "evil.example.com", "Accept": "application/json"}
    )
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "base_url_unset"
    assert "LTI_EXCHANGE_BASE_URL" in error["message"]


def test_operator_frame_origins_are_added_and_junk_is_ignored(app_with):
    client = app_with(
        base_url="https://exchange.example.edu",
        frame_origins="https://canvas.example.edu/courses, *  javascript:alert(1) "
        "https://a'b.example  http://moodle.example.edu:8080/x",
    )
    answer = client.get(
        "/lti/login",
        query_string={"iss": "https://lms.example.edu", "target_link_uri": "https://x/"},
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 400
    assert frame_ancestors(answer) == [
        "http://moodle.example.edu:8080",
        "https://canvas.example.edu",
        "https://lms.example.edu",
        "https://login.example.edu:8443",
    ]
