"""Every LTI error page, reached by a crafted request, as a real Chromium shows it: it says what
happened in plain words and who can fix it (the person: open it again; the instructor; the LMS
administrator; the exchange's operator), never the LTI library's words; axe-core finds no
serious or critical violation; it fits a 360 px screen. Screenshots:
``test-artifacts/screenshots/error-*.png``.

Pages that answer a request a browser cannot make by itself (an LMS's signed launch) are made
with the simulated LMS's HTTP client and shown to the browser exactly as the tool sent them.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.pages import NARROW, assert_accessible, fits_narrow_screen, screenshot
from tests.factories import registered_app
from tests.functional.lti.test_link_error_pages import (
    bind_form,
    forget_link,
    lms_names_the_assignment,
)
from tests.lms.platform import (
    CLAIM_DEPLOYMENT_ID,
    CLAIM_TARGET_LINK_URI,
    LEARNER,
    LmsContext,
    LmsUser,
    SimulatedPlatform,
)

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's

LIBRARY_WORDS = (
    "Can't decode",
    "Signature has expired",
    "Could not find registration details",
    "LtiException",
    "Traceback",
    "pylti1p3",
)


@dataclass
class Case:
    name: str
    status: int
    audience: str  # data-audience of the "who can fix it" box
    heading: str
    words: tuple[str, ...] = field(default=())  # in the "what happened" / "to do" text


def form_page(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        f'<!doctype html><title>crafted</title><form method="post" action="{html.escape(action)}">'
        f'{inputs}<button type="submit">Send</button></form>'
    )


@pytest.fixture
def narrow(chromium):
    profile = chromium.new_context(viewport=NARROW)
    yield profile
    profile.close()


def check(page, case: Case) -> None:
    expect(page.locator("h1")).to_have_text(case.heading)
    who = page.locator("#who")
    expect(who).to_have_attribute("data-audience", case.audience)
    shown = page.inner_text("main")
    for word in case.words:
        assert word in shown, (case.name, word, shown)
    for word in LIBRARY_WORDS:
        assert word not in page.content(), (case.name, word)
    assert fits_narrow_screen(page), case.name
    assert_accessible(page)
    screenshot(page, "error-" + case.name)


def show_as_sent(page, url: str, status: int, body: str, headers) -> None:
    """Show the browser an answer of the tool's, exactly as it was sent, at ``url``."""
    kept = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    page.route(url, lambda route: route.fulfill(status=status, body=body, headers=kept))
    response = page.goto(url)
    assert response is not None and response.status == status


def show(page, url: str, answer: requests.Response) -> None:
    """Show the browser the tool's answer to a request it could not make itself."""
    show_as_sent(page, url, answer.status_code, answer.text, answer.headers)


# -- requests a browser makes ----------------------------------------------------------------

BROWSER_CASES = [
    Case("reload-launch", 405, "you", "Open the assignment from your LMS", ("bookmarked",)),
    Case(
        "unknown-platform",
        400,
        "lms_admin",
        "This LMS is not registered with the exchange",
        ("lti-exchange platform add",),
    ),
    Case("foreign-target", 400, "lms_admin", "The tool is set up wrongly in the LMS"),
    Case(
        "login-without-hint",
        400,
        "you",
        "The assignment could not be opened",
        ("without saying who you are",),
    ),
    Case("deep-link-expired", 401, "you", "This choice has expired", ("30 minutes",)),
    Case("bad-max-score", 400, "you", "The maximum score is not a number the exchange can use"),
    Case("bad-assignment-id", 400, "you", "That assignment id cannot be used"),
    Case("bind-expired", 401, "you", "This form has expired"),
    Case("bind-token-missing", 400, "you", "The choice did not arrive"),
    Case("bind-from-another-site", 403, "you", "The assignment could not be opened", ("Another",)),
    Case("launch-without-state", 401, "you", "The assignment could not be opened"),
]


@pytest.mark.parametrize("case", BROWSER_CASES, ids=[c.name for c in BROWSER_CASES])
def test_error_page_of_a_crafted_request(live_server, pages_lms, narrow, case: Case):
    base = live_server.url
    page = narrow.new_page()
    p = pages_lms.platform
    login = {"iss": p.issuer, "client_id": p.client_id, "login_hint": "someone"}
    posts = {
        "deep-link-expired": (
            "/lti/deep-link",
            {"deep_link_token": "x" * 43, "assignment_id": "ps1"},
        ),
        "bad-max-score": (
            "/lti/deep-link",
            {"deep_link_token": "x" * 43, "assignment_id": "ps1", "max_score": "-3"},
        ),
        "bad-assignment-id": ("/lti/deep-link", {"deep_link_token": "x", "assignment_id": "../x"}),
        "bind-expired": ("/lti/resource-link", {"bind_token": "y" * 43, "assignment_id": "ps1"}),
        "bind-token-missing": ("/lti/resource-link", {"assignment_id": "ps1"}),
        "bind-from-another-site": ("/lti/launch/bind", {"launch_id": "a" * 36, "state": "s"}),
        "launch-without-state": ("/lti/launch", {"id_token": "not-a-token"}),
    }
    if case.name == "reload-launch":
        response = page.goto(base + "/lti/launch")
        assert response.headers.get("allow") == "POST"
    elif case.name == "unknown-platform":
        query = {**login, "iss": "https://unknown-lms.example.edu"}
        response = page.goto(
            f"{base}/lti/login?" + urlencode({**query, "target_link_uri": base + "/lti/launch"})
        )
    elif case.name == "foreign-target":
        query = {**login, "target_link_uri": "https://elsewhere.example.org/launch"}
        response = page.goto(f"{base}/lti/login?" + urlencode(query))
    elif case.name == "login-without-hint":
        query = {k: v for k, v in login.items() if k != "login_hint"}
        query["target_link_uri"] = base + "/lti/launch"
        response = page.goto(f"{base}/lti/login?" + urlencode(query))
    else:
        path, fields = posts[case.name]
        page.set_content(form_page(base + path, fields))
        with page.expect_navigation() as navigation:
            page.get_by_role("button", name="Send").click()
        response = navigation.value
    assert response is not None and response.status == case.status, case.name
    check(page, case)


def test_a_tool_without_its_public_address_sends_to_the_operator(tmp_path, narrow):
    """``LTI_EXCHANGE_BASE_URL`` unset and a wildcard bind: the page an LMS's login reaches (the
    in-process app's answer, shown to the browser as sent)."""
    client = registered_app(tmp_path / "data", bind="0.0.0.0:8000")
    query = {"iss": "https://lms.example.edu", "client_id": "tool-1", "login_hint": "u"}
    answer = client.get("/lti/login", query_string=query, headers={"Accept": "text/html"})
    assert answer.status_code == 503
    page = narrow.new_page()
    show_as_sent(
        page,
        "http://exchange.invalid/lti/login",
        answer.status_code,
        answer.get_data(as_text=True),
        answer.headers,
    )
    check(
        page,
        Case(
            "base-url-unset",
            503,
            "operator",
            "The exchange is not set up yet",
            ("LTI_EXCHANGE_BASE_URL",),
        ),
    )


# -- launches only an LMS can sign -------------------------------------------------------------


def launch_page(live_server, pages_lms, narrow, **launch: Any) -> tuple[Page, requests.Response]:
    """A learner's launch (unless ``launch`` says otherwise) from the pages LMS, its answer shown
    in a new page of the narrow browser as the tool sent it."""
    answer = pages_lms.platform.launch(
        requests.Session(), **{"roles": [LEARNER], **launch}, accept_json=False
    )
    page = narrow.new_page()
    show(page, live_server.url + "/lti/launch", answer)
    return page, answer


def test_expired_launch_page_has_no_library_text(live_server, pages_lms, narrow):
    now = int(time.time())

    def expired(claims: dict) -> dict:
        claims.update(iat=now - 600, exp=now - 300)
        return claims

    page, _answer = launch_page(live_server, pages_lms, narrow, mutate=expired)
    check(
        page,
        Case(
            "launch-expired",
            401,
            "you",
            "The assignment could not be opened",
            ("only valid for a few minutes", "open the assignment again"),
        ),
    )


def test_replayed_launch_page(live_server, pages_lms, narrow):
    page, _answer = launch_page(live_server, pages_lms, narrow, replay=True)
    check(
        page,
        Case(
            "launch-replayed", 401, "you", "The assignment could not be opened", ("already used",)
        ),
    )


def test_unknown_deployment_page_sends_to_the_lms_administrator(live_server, pages_lms, narrow):
    def unknown(claims: dict) -> dict:
        claims[CLAIM_DEPLOYMENT_ID] = "999-unknown"
        return claims

    page, answer = launch_page(live_server, pages_lms, narrow, mutate=unknown)
    case = Case(
        "launch-unknown-deployment",
        answer.status_code,
        "lms_admin",
        "The assignment could not be opened",
    )
    check(page, case)
    expect(page.locator("#detail")).to_contain_text("lti-exchange platform add --deployment-id")


def test_launch_without_a_course_sends_to_the_instructor(live_server, pages_lms, narrow):
    page, _answer = launch_page(live_server, pages_lms, narrow, context=None)
    check(
        page, Case("launch-without-course", 400, "instructor", "The assignment could not be opened")
    )
    expect(page.locator("#detail")).to_contain_text("course")


def test_student_in_the_deep_linking_chooser_is_sent_to_the_instructor(
    live_server, pages_lms, narrow
):
    return_url = pages_lms.platform.deep_link_return_url
    page, _answer = launch_page(
        live_server,
        pages_lms,
        narrow,
        message_type="LtiDeepLinkingRequest",
        deep_linking=SimulatedPlatform.deep_linking_settings(return_url),
    )
    check(page, Case("deep-link-student", 403, "instructor", "Only instructors can do this"))


def test_a_launch_changed_on_its_way_is_refused(live_server, pages_lms, narrow):
    def retargeted(claims: dict) -> dict:
        claims[CLAIM_TARGET_LINK_URI] = live_server.url + "/lti/launch?elsewhere=1"
        return claims

    page, _answer = launch_page(live_server, pages_lms, narrow, mutate=retargeted)
    check(
        page,
        Case(
            "launch-target-mismatch",
            401,
            "you",
            "The assignment could not be opened",
            ("changed on its way",),
        ),
    )


def _bind_answer(form: dict) -> requests.Response:
    return requests.post(
        form["action"],
        data={"bind_token": form["fields"]["bind_token"], "assignment_id_other": "ps1"},
        headers={"Accept": "text/html"},
        timeout=30,
    )


def test_binding_a_link_the_lms_took_over_sends_to_the_lms(live_server, pages_lms, narrow):
    lms, context, user = pages_lms.platform, LmsContext.make(), LmsUser.make("Ina", "Structor")
    link = lms.add_link(context, title="Week 4")
    form = bind_form(lms, context, link, user)
    lms_names_the_assignment(lms, context, link, user, "ps4")
    page = narrow.new_page()
    show(page, form["action"], _bind_answer(form))
    check(
        page,
        Case(
            "link-bound-by-lms",
            409,
            "you",
            "The LMS decides this link's assignment",
            ("nbgrader_assignment_id",),
        ),
    )


def test_binding_a_link_that_is_gone_says_to_launch_again(live_server, pages_lms, narrow):
    lms, context, user = pages_lms.platform, LmsContext.make(), LmsUser.make("Ina", "Structor")
    link = lms.add_link(context, title="Week 5")
    form = bind_form(lms, context, link, user)
    forget_link(live_server, link)
    page = narrow.new_page()
    show(page, form["action"], _bind_answer(form))
    check(page, Case("link-gone", 404, "you", "This LMS link is no longer known"))
