"""Deep Linking 2.0: an instructor picks a released assignment in the LMS; the tool answers with
a signed LtiDeepLinkingResponse the platform verifies against the tool's /lti/jwks."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from tests.functional.lti.helpers import (
    assert_html_error,
    assert_json_error,
    describe,
    launched,
    release,
)
from tests.lms.platform import (
    ACCEPT_JSON,
    CLAIM_DEPLOYMENT_ID,
    CLAIM_DL_CONTENT_ITEMS,
    CLAIM_DL_DATA,
    CLAIM_DL_SETTINGS,
    CLAIM_MESSAGE_TYPE,
    CLAIM_VERSION,
    INSTRUCTOR,
    LEARNER,
    TEACHING_ASSISTANT,
    LmsContext,
    LmsUser,
    SimulatedPlatform,
    parse_form,
)

DEEP_LINKING = "LtiDeepLinkingRequest"


def course_with_releases(live_server, platform, browser, *assignments: str):
    """An instructor, a course and released assignments; return (user, context, launch)."""
    user = LmsUser.make("Dee", "Linker")
    context = LmsContext.make()
    teacher = launched(platform.launch(browser, user=user, context=context, roles=[INSTRUCTOR]))
    for assignment in assignments:
        release(live_server, teacher["course_id"], teacher["access_token"], assignment)
    return user, context, teacher


def deep_link_launch(platform, browser, user, context, *, accept_json=True, roles=None, **kw):
    return platform.launch(
        browser,
        user=user,
        context=context,
        roles=roles or [INSTRUCTOR],
        message_type=DEEP_LINKING,
        deep_linking=kw.pop(
            "deep_linking", SimulatedPlatform.deep_linking_settings(platform.deep_link_return_url)
        ),
        accept_json=accept_json,
        **kw,
    )


def respond(live_server, token, assignment_id="ps1", max_score=10, accept_json=True):
    headers = {"Accept": ACCEPT_JSON if accept_json else "text/html"}
    body = {"deep_link_token": token, "assignment_id": assignment_id}
    if max_score is not None:
        body["max_score"] = max_score
    if accept_json:
        return requests.post(
            f"{live_server.url}/lti/deep-link", json=body, headers=headers, timeout=30
        )
    return requests.post(f"{live_server.url}/lti/deep-link", data=body, headers=headers, timeout=30)


@pytest.mark.all_backends  # single-use deep-link session: the key-value store's atomic pop
def test_deep_linking_round_trip(live_server, platform, browser):
    user, context, teacher = course_with_releases(live_server, platform, browser, "ps1", "ps2")
    answer = deep_link_launch(platform, browser, user, context, deployment_id="2")
    assert answer.status_code == 200, describe(answer)
    assert answer.lti.claims[CLAIM_DL_SETTINGS]["data"] == "opaque-123"
    offer = answer.json()
    assert offer["message_type"] == DEEP_LINKING
    assert sorted(offer["assignments"]) == ["ps1", "ps2"], offer
    assert offer["respond_url"] == f"{live_server.url}/lti/deep-link"
    assert isinstance(offer["deep_link_token"], str) and len(offer["deep_link_token"]) >= 20

    chosen = respond(live_server, offer["deep_link_token"], "ps1", 10)
    assert chosen.status_code == 200, describe(chosen)
    result = chosen.json()
    assert result["return_url"] == platform.deep_link_return_url
    token = result["jwt"]

    # what the LMS checks: the tool's signature (RS256, kid in /lti/jwks), aud, iss
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header.get("kid"), header
    jwks = requests.get(f"{live_server.url}/lti/jwks", timeout=30).json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]], jwks
    claims = platform.verify_deep_link_response(token)
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert aud == [platform.issuer], claims
    assert claims["iss"] == platform.client_id
    assert isinstance(claims["nonce"], str) and claims["nonce"], claims
    now = time.time()
    assert now - 120 <= claims["iat"] <= now + 60, claims
    assert claims["exp"] > now, claims
    assert claims[CLAIM_DEPLOYMENT_ID] == "2"
    assert claims[CLAIM_MESSAGE_TYPE] == "LtiDeepLinkingResponse"
    assert claims[CLAIM_VERSION] == "1.3.0"
    assert claims[CLAIM_DL_DATA] == "opaque-123"
    items = claims[CLAIM_DL_CONTENT_ITEMS]
    assert len(items) == 1, items
    item = items[0]
    assert item["type"] == "ltiResourceLink"
    assert item["custom"]["nbgrader_assignment_id"] == "ps1"
    assert item["lineItem"]["scoreMaximum"] == 10
    assert item.get("url", live_server.url).startswith(live_server.url), item

    # the browser auto-posts it to the platform, which accepts it
    posted = requests.post(result["return_url"], data={"JWT": token}, timeout=30)
    assert posted.status_code == 200, posted.text
    assert platform.deep_link_responses[-1][CLAIM_DL_CONTENT_ITEMS] == items

    # the deep-linking session is single-use
    second = respond(live_server, offer["deep_link_token"], "ps2", 5)
    assert_json_error(second, (400, 401, 403, 404, 409, 410))


def test_deep_linking_in_a_browser(live_server, platform, browser):
    user, context, _teacher = course_with_releases(live_server, platform, browser, "hw-a", "hw-b")
    answer = deep_link_launch(platform, browser, user, context, accept_json=False)
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["Content-Type"].startswith("text/html")
    page = answer.text
    assert "hw-a" in page and "hw-b" in page, page
    chooser = parse_form(page)
    assert chooser["action"] == f"{live_server.url}/lti/deep-link", chooser
    assert chooser["method"].lower() == "post", chooser
    token = chooser["fields"].get("deep_link_token")
    assert token, chooser
    # the browser submits the chooser; the tool answers with the auto-posting form to the LMS
    chosen = respond(live_server, token, "hw-b", 7, accept_json=False)
    assert chosen.status_code == 200, describe(chosen)
    back = parse_form(chosen.text)
    assert back["action"] == platform.deep_link_return_url, back
    assert back["method"].lower() == "post"
    posted = requests.post(back["action"], data=back["fields"], timeout=30)
    assert posted.status_code == 200, posted.text
    item = platform.deep_link_responses[-1][CLAIM_DL_CONTENT_ITEMS][0]
    assert item["custom"]["nbgrader_assignment_id"] == "hw-b"
    assert item["lineItem"]["scoreMaximum"] == 7


def test_deep_link_without_a_max_score_has_no_line_item(live_server, platform, browser):
    user, context, _ = course_with_releases(live_server, platform, browser, "ps1")
    offer = deep_link_launch(platform, browser, user, context).json()
    chosen = respond(live_server, offer["deep_link_token"], "ps1", None)
    assert chosen.status_code == 200, describe(chosen)
    item = platform.verify_deep_link_response(chosen.json()["jwt"])[CLAIM_DL_CONTENT_ITEMS][0]
    assert item["custom"]["nbgrader_assignment_id"] == "ps1"
    assert "lineItem" not in item, item


def test_first_launch_of_a_new_course_may_be_deep_linking(live_server, platform, browser):
    """Adding the tool to a new course is usually the instructor's first launch: the course,
    user and enrolment are provisioned by the deep-linking launch itself."""
    answer = deep_link_launch(platform, browser, LmsUser.make(), LmsContext.make())
    assert answer.status_code == 200, describe(answer)
    offer = answer.json()
    assert offer["assignments"] == [], offer
    chosen = respond(live_server, offer["deep_link_token"], "ps1", 10)
    assert chosen.status_code == 200, describe(chosen)
    item = platform.verify_deep_link_response(chosen.json()["jwt"])[CLAIM_DL_CONTENT_ITEMS][0]
    assert item["custom"]["nbgrader_assignment_id"] == "ps1"


def test_teaching_assistant_may_deep_link(live_server, platform, browser):
    user, context, _ = course_with_releases(live_server, platform, browser, "ps1")
    assistant = LmsUser.make("Tess", "Assistant")
    answer = deep_link_launch(
        platform, browser, assistant, context, roles=[TEACHING_ASSISTANT, INSTRUCTOR]
    )
    assert answer.status_code == 200, describe(answer)
    assert answer.json()["assignments"] == ["ps1"]


def test_learner_may_not_deep_link(live_server, platform, browser):
    user, context, _ = course_with_releases(live_server, platform, browser, "ps1")
    answer = deep_link_launch(platform, browser, LmsUser.make(), context, roles=[LEARNER])
    assert_json_error(answer, (401, 403), ("instructor", "role", "staff"))


def test_deep_linking_request_without_settings_is_rejected(live_server, platform, browser):
    user, context, _ = course_with_releases(live_server, platform, browser)
    answer = platform.launch(
        browser, user=user, context=context, roles=[INSTRUCTOR], message_type=DEEP_LINKING
    )
    assert_json_error(answer, (400, 401, 403), ("deep", "link", "settings", "return"))


def test_deep_linking_request_not_accepting_resource_links_is_rejected(platform, browser):
    settings = SimulatedPlatform.deep_linking_settings(
        platform.deep_link_return_url, accept_types=["file", "html"]
    )
    answer = deep_link_launch(
        platform, browser, LmsUser.make(), LmsContext.make(), deep_linking=settings
    )
    assert_json_error(answer, (400, 401, 403), ("resource", "link", "accept"))


def test_deep_link_answer_with_an_unknown_token_is_refused(live_server):
    answer = respond(live_server, "no-such-deep-link-session-token", "ps1", 10)
    assert_json_error(answer, (400, 401, 403, 404, 410), ("deep", "expired", "start again"))


def test_deep_link_answer_with_a_bad_assignment_id_is_refused(live_server, platform, browser):
    user, context, _ = course_with_releases(live_server, platform, browser, "ps1")
    offer = deep_link_launch(platform, browser, user, context).json()
    answer = respond(live_server, offer["deep_link_token"], "../etc/passwd", 10)
    assert_json_error(answer, (400, 404, 422), ("assignment",))


def test_deep_link_page_in_a_browser_error(platform, browser):
    answer = deep_link_launch(
        platform, browser, LmsUser.make(), LmsContext.make(), roles=[LEARNER], accept_json=False
    )
    assert_html_error(answer, (401, 403), ("instructor", "role", "staff"))
