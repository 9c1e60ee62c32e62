"""The instructor dashboard and the student view in a real Chromium, inside the LMS's iframe
(third-party cookies blocked): opened from the landing page, it shows the counts a cycle
produced, the extension form changes the late flag, the retry button re-queues a grade the LMS
refused, axe-core finds no serious violation, screenshots are saved."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import assert_accessible, screenshot
from tests.functional.lti.dashboard_cycle import COUNTS_AFTER, REFUSAL, run_cycle
from tests.functional.lti.helpers import describe, launched, notebook
from tests.functional.lti.test_grades import drain
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser
from tests.support import TAR, make_tar

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's

SIGNED_IN = "You are signed in to the nbgrader exchange"


def small_course(live_server, lms, ctx: LmsContext, teacher: LmsUser, student: LmsUser) -> str:
    """ps1 released, due long ago, and submitted (late) by ``student``; returns the course id."""
    staff = launched(lms.launch(requests.Session(), user=teacher, roles=[INSTRUCTOR], context=ctx))
    learner = launched(lms.launch(requests.Session(), user=student, roles=[LEARNER], context=ctx))
    course, token = staff["course_id"], staff["access_token"]
    base = f"courses/{course}/assignments/ps1"
    files = make_tar({"problem1.ipynb": notebook()})
    answer = live_server.api("POST", f"{base}/releases", token, data=files, headers=TAR)
    assert answer.status_code == 201, describe(answer)
    answer = live_server.api("PUT", f"{base}/due-date", token, json={"due_at": "2020-01-01T00:00Z"})
    assert answer.status_code == 200, describe(answer)
    answer = live_server.api(
        "POST", f"{base}/submissions", learner["access_token"], data=files, headers=TAR
    )
    assert answer.status_code == 201, describe(answer)
    return learner["username"]


def open_in_frame(lms, context, user: LmsUser, roles, ctx: LmsContext, button: str):
    url, _record = lms.prepare(storage=True, user=user, roles=roles, context=ctx)
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("#tool")
    # By role and name: the bind page before it has two h1s (a strict locator would fail at once)
    expect(frame.get_by_role("heading", name=SIGNED_IN)).to_be_visible(timeout=15_000)
    frame.get_by_role("button", name=button).click()
    return page, frame


def test_dashboard_renders_and_the_extension_form_changes_the_late_flag(live_server, lms, context):
    ctx = LmsContext.make(title="Dashboards 101")
    teacher, student = LmsUser.make("Tara", "Teacher"), LmsUser.make("Lee", "Learner")
    username = small_course(live_server, lms, ctx, teacher, student)

    page, frame = open_in_frame(
        lms, context, teacher, (INSTRUCTOR,), ctx, "Open the course dashboard"
    )
    expect(frame.locator("h1")).to_have_text("Course dashboard: Dashboards 101")
    ps1 = frame.locator('section[data-assignment="ps1"]')
    expect(ps1.locator('[data-count="submitted"]')).to_have_text("1")
    expect(ps1.locator('[data-count="late"]')).to_have_text("1")
    expect(ps1.locator("svg.chart")).to_have_count(1)
    tool = page.frame(name="tool")
    assert tool.url == live_server.url + "/lti/dashboard" and "session" not in tool.url
    assert_accessible(tool)
    screenshot(page, "dashboard-course")

    frame.get_by_role("button", name=username, exact=True).click()
    row = frame.locator('tr[data-assignment="ps1"]')
    expect(row).to_have_attribute("data-late", "yes")
    frame.get_by_label(f"ps1: due date for {username} (UTC)").fill("2100-01-01T00:00")
    frame.get_by_role("button", name="Set extension").click()
    expect(frame.get_by_role("status")).to_contain_text("2100-01-01 00:00 UTC")
    expect(row).to_have_attribute("data-late", "no")
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "dashboard-student-extension")

    frame.get_by_role("button", name="Back to the course dashboard").click()
    expect(ps1.locator('[data-count="late"]')).to_have_text("0")


def test_student_view_shows_a_late_submission(live_server, lms, context):
    ctx = LmsContext.make(title="Dashboards 102")
    teacher, student = LmsUser.make("Theo", "Teacher"), LmsUser.make("Lou", "Learner")
    small_course(live_server, lms, ctx, teacher, student)
    page, frame = open_in_frame(lms, context, student, (LEARNER,), ctx, "My assignments")
    expect(frame.locator("h1")).to_have_text("My assignments in Dashboards 102")
    row = frame.locator('tr[data-assignment="ps1"]')
    expect(row).to_have_attribute("data-late", "yes")
    expect(row.locator(".late")).to_have_text("late")
    expect(frame.get_by_role("button", name="Open the course dashboard")).to_have_count(0)
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "dashboard-student-view")


def test_dashboard_shows_a_cycles_counts_and_retry_requeues_the_refused_grade(
    live_server, lms, context
):
    cycle = run_cycle(live_server, lms, title="Dashboards 103")
    page, frame = open_in_frame(
        lms, context, cycle.teacher_user, (INSTRUCTOR,), cycle.context, "Open the course dashboard"
    )
    ps1 = frame.locator('section[data-assignment="ps1"]')
    for name, value in COUNTS_AFTER.items():
        expect(ps1.locator(f'[data-count="{name}"]')).to_have_text(str(value))
    refused = ps1.locator(f'tr.failed-grade[data-student="{cycle.second}"]')
    expect(refused).to_contain_text(REFUSAL)
    screenshot(page, "dashboard-after-cycle")

    frame.get_by_role("button", name=f"Retry sending the grade of {cycle.second}").click()
    expect(ps1.locator('[data-count="pending"]')).to_have_text("1")
    expect(ps1.locator('[data-count="failed"]')).to_have_text("0")
    expect(ps1.locator("tr.failed-grade")).to_have_count(0)
    assert_accessible(page.frame(name="tool"))
    assert drain(live_server)["sent"] == 1  # the re-queued grade reaches the LMS
    scores = {user: body["scoreGiven"] for (_item, user), body in lms.scores(cycle.context).items()}
    assert scores == {cycle.people[0][0].sub: 3, cycle.people[1][0].sub: 3}, scores
