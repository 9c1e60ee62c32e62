"""The deep-linking chooser pre-fills the maximum score with the chosen assignment's points (as
the release stated them), follows the choice until the person types a score, and sends what is
shown. Real Chromium inside the LMS's iframe."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import assert_accessible, screenshot
from tests.browser.test_deep_link_chooser import open_chooser, returned_item
from tests.functional.lti.helpers import bearer, describe, launched, notebook
from tests.lms.platform import INSTRUCTOR, LmsContext, LmsUser
from tests.support import make_tar

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's


@pytest.fixture
def pointed_course(live_server, pages_lms):
    """ps1 released with 10 points, ps2 with 7.5."""
    user = LmsUser.make("Pia", "Teacher")
    ctx = LmsContext.make(title="Points 101")
    teacher = launched(
        pages_lms.platform.launch(requests.Session(), user=user, context=ctx, roles=[INSTRUCTOR])
    )
    for name, points in (("ps1", "10"), ("ps2", "7.5")):
        answer = requests.post(
            f"{live_server.url}/api/v1/courses/{teacher['course_id']}/assignments/{name}"
            f"/releases?max_score={points}",
            data=make_tar({"problem1.ipynb": notebook()}),
            headers={**bearer(teacher["access_token"]), "Content-Type": "application/x-tar"},
            timeout=60,
        )
        assert answer.status_code == 201, describe(answer)
    return user, ctx


def test_the_maximum_score_follows_the_choice_until_typed(pages_lms, pointed_course, context):
    user, ctx = pointed_course
    page, frame = open_chooser(pages_lms, context, user, ctx)
    score = frame.locator("#max-score")
    expect(score).to_have_value("10")
    ps2 = frame.get_by_role("radio", name=re.compile("^ps2"))
    expect(frame.locator("label", has=frame.locator("code", has_text="ps2"))).to_contain_text(
        "7.5 points"
    )
    ps2.check()
    expect(score).to_have_value("7.5")
    frame.get_by_role("radio", name=re.compile("^Another assignment id")).check()
    expect(score).to_have_value("")
    ps2.check()
    expect(score).to_have_value("7.5")
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "deep-link-chooser-points")
    before = len(pages_lms.platform.deep_link_responses)
    frame.get_by_role("button", name="Add to the course").click()
    assert returned_item(pages_lms, page, before)["lineItem"]["scoreMaximum"] == 7.5


def test_a_typed_score_is_kept_when_the_choice_changes(pages_lms, pointed_course, context):
    user, ctx = pointed_course
    page, frame = open_chooser(pages_lms, context, user, ctx)
    frame.locator("#max-score").fill("9")
    frame.get_by_role("radio", name=re.compile("^ps2")).check()
    expect(frame.locator("#max-score")).to_have_value("9")
    before = len(pages_lms.platform.deep_link_responses)
    frame.get_by_role("button", name="Add to the course").click()
    item = returned_item(pages_lms, page, before)
    assert item["custom"]["nbgrader_assignment_id"] == "ps2"
    assert item["lineItem"]["scoreMaximum"] == 9


def test_a_score_typed_before_the_script_ran_is_kept(pages_lms, pointed_course, context):
    user, ctx = pointed_course
    held = []
    context.route("**/chooser.js", lambda route: held.append(route))  # released below
    page, frame = open_chooser(pages_lms, context, user, ctx, wait_until="commit")
    frame.locator("#max-score").fill("9")
    assert len(held) == 1
    held[0].continue_()
    frame.get_by_role("radio", name=re.compile("^ps2")).check()
    expect(frame.locator("#max-score")).to_have_value("9")
    before = len(pages_lms.platform.deep_link_responses)
    frame.get_by_role("button", name="Add to the course").click()
    assert returned_item(pages_lms, page, before)["lineItem"]["scoreMaximum"] == 9
