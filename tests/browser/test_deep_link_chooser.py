"""The deep-linking chooser inside the LMS's iframe, in a real Chromium: the course title, each
released assignment with its release time and notebooks, one clear choice (a listed assignment,
or "another assignment id" as its own option: a typed id never overrides a chosen radio), and
the signed answer the LMS receives. axe-core on the chooser; screenshots."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import assert_accessible, screenshot
from tests.functional.lti.helpers import launched, release
from tests.lms.platform import (
    CLAIM_DL_CONTENT_ITEMS,
    INSTRUCTOR,
    LmsContext,
    LmsUser,
    SimulatedPlatform,
)

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's


@pytest.fixture
def course(live_server, pages_lms):
    """An instructor's course ("Signals and Systems") with ps1 and ps2 released."""
    user = LmsUser.make("Ida", "Teacher")
    ctx = LmsContext.make(title="Signals and Systems")
    teacher = launched(
        pages_lms.platform.launch(requests.Session(), user=user, context=ctx, roles=[INSTRUCTOR])
    )
    for name in ("ps1", "ps2"):
        release(live_server, teacher["course_id"], teacher["access_token"], name)
    return user, ctx, teacher["course_id"]


def open_chooser(pages_lms, context, user, ctx, wait_until: str = "load"):
    p = pages_lms.platform
    url, _ = p.prepare(
        storage=True,
        roles=(INSTRUCTOR,),
        user=user,
        context=ctx,
        message_type="LtiDeepLinkingRequest",
        deep_linking=SimulatedPlatform.deep_linking_settings(p.deep_link_return_url),
    )
    page = context.new_page()
    page.goto(url, wait_until=wait_until)  # type: ignore[arg-type]
    frame = page.frame_locator("#tool")
    heading = frame.get_by_role("heading", name="Add an nbgrader assignment to the course")
    expect(heading).to_be_visible(timeout=15_000)
    return page, frame


def returned_item(pages_lms, page, before: int) -> dict:
    """The content item of the deep-linking answer the LMS received after ``before`` answers."""
    p = pages_lms.platform
    expect(page.frame_locator("#tool").locator("body")).to_contain_text(
        "deep linking response received", timeout=15_000
    )
    assert len(p.deep_link_responses) == before + 1
    return p.deep_link_responses[-1][CLAIM_DL_CONTENT_ITEMS][0]


def test_chooser_shows_the_course_and_releases_and_a_listed_choice_wins(pages_lms, course, context):
    user, ctx, code = course
    page, frame = open_chooser(pages_lms, context, user, ctx)
    expect(frame.locator("#course")).to_contain_text("Signals and Systems")
    expect(frame.locator("#course")).to_contain_text(code)
    for name in ("ps1", "ps2"):
        label = frame.locator("label", has=frame.locator("code", has_text=name))
        expect(label).to_contain_text(re.compile(r"Released \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
        expect(label).to_contain_text("1 notebook: problem1")
    expect(frame.get_by_role("radio", name=re.compile("^ps1"))).to_be_checked()
    other = frame.get_by_role("radio", name=re.compile("^Another assignment id"))
    expect(other).not_to_be_checked()
    expect(frame.get_by_label("Maximum score", exact=False)).to_have_value("")
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "deep-link-chooser")

    # Typing an id selects "another id"; choosing ps2 afterwards is what is sent.
    frame.locator("#other-id").fill("later-1")
    expect(other).to_be_checked()
    frame.get_by_role("radio", name=re.compile("^ps2")).check()
    before = len(pages_lms.platform.deep_link_responses)
    frame.get_by_role("button", name="Add to the course").click()
    item = returned_item(pages_lms, page, before)
    assert item["custom"]["nbgrader_assignment_id"] == "ps2"
    assert "lineItem" not in item  # no maximum score: no gradebook column


def test_chooser_another_id_with_a_maximum_score(pages_lms, course, context):
    user, ctx, _code = course
    page, frame = open_chooser(pages_lms, context, user, ctx)
    # By keyboard: focus "another id", type the id and the score, submit with Enter.
    frame.get_by_role("radio", name=re.compile("^Another assignment id")).focus()
    page.keyboard.press("Space")
    frame.locator("#other-id").fill("ps9")
    frame.locator("#max-score").fill("12")
    before = len(pages_lms.platform.deep_link_responses)
    frame.locator("#max-score").press("Enter")
    item = returned_item(pages_lms, page, before)
    assert item["custom"]["nbgrader_assignment_id"] == "ps9"
    assert item["lineItem"]["scoreMaximum"] == 12
