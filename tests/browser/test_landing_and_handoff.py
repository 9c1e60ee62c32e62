"""The landing page an LMS launch opens (inside the LMS's iframe), and its one-click hand-off to
the user's notebook server, in a real Chromium with real Jupyter servers:

- the page names the person, the course (title and id), the role in plain words and the link's
  assignment; an instructor is not called a student, and gets the manual steps too;
- the hand-off succeeds: the page says so and links to the notebook server's JupyterLab;
- the notebook server accepts tokens from another exchange URL: the page says exactly that;
- the notebook server is down: the page says, after its timeout, what to check;
- with JavaScript off the manual connect steps are visible;
- axe-core finds no serious or critical violation; the page fits a 360 px screen.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import NARROW, assert_accessible, fits_narrow_screen, screenshot
from tests.conftest import free_port
from tests.end_to_end.helpers import BIN, JupyterServer, Role
from tests.functional.test_handoff_extension import INSTALLED_CONFIG
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's

SIGNED_IN = "You are signed in to the nbgrader exchange"


@pytest.fixture(scope="module")
def notebooks(live_server, tmp_path_factory):
    """Real Jupyter servers with the hand-off extension: one that uses this exchange, one
    configured for another exchange URL, one with no exchange URL; a port where nothing
    listens."""
    base = tmp_path_factory.mktemp("pages-handoff")
    servers = []
    configs = (("gale", live_server.url), ("hale", "http://127.0.0.1:9"), ("ivy", ""))
    try:
        for name, exchange in configs:
            role = Role(name, base / name, exchange)
            if not INSTALLED_CONFIG.is_file():  # editable install: enable it the documented way
                role.run(str(BIN / "lti-exchange"), "handoff", "enable", "--user")
            servers.append(JupyterServer(role, free_port()))
        good, other, unset = servers
        down = f"http://127.0.0.1:{free_port()}"
        yield {"good": good, "other": other, "unset": unset, "down": down}
    finally:  # (also when one fails to start: the others must not outlive the tests)
        for server in servers:
            server.stop()


def sign_in_to(context, server: JupyterServer) -> None:
    """The browser profile signs in to the Jupyter server (its login cookie), as a user would."""
    page = context.new_page()
    page.goto(f"{server.url}/lti-exchange/handoff?token={server.token}")
    expect(page.locator("h1")).to_have_text("Connecting your notebook server to the exchange")
    page.close()


def open_landing(pages_lms, context, *, roles=(LEARNER,), custom=None, user=None, ctx=None):
    url, _record = pages_lms.platform.prepare(
        storage=True, roles=roles, custom=custom, user=user, context=ctx
    )
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("#tool")
    # (The launch passes the storage check page first, which has two headings.)
    expect(frame.get_by_role("heading", name=SIGNED_IN)).to_be_visible(timeout=15_000)
    return page, frame


def test_landing_page_names_person_course_role_and_assignment(pages_lms, notebooks, context):
    pages_lms.set_notebook_url(notebooks["good"].url + "/")
    user = LmsUser.make("Sam", "Student")
    ctx = LmsContext.make(title="Data Science 101")
    page, frame = open_landing(
        pages_lms, context, custom={"nbgrader_assignment_id": "ps1"}, user=user, ctx=ctx
    )
    expect(frame.locator("#person")).to_contain_text("Sam Student")
    expect(frame.locator("#person")).to_contain_text("student id")
    expect(frame.locator("#course")).to_contain_text("Data Science 101")
    expect(frame.locator("#course")).to_contain_text("course id")
    expect(frame.locator("#role")).to_have_text("student")
    expect(frame.locator("#assignment")).to_contain_text("ps1")
    expect(frame.get_by_role("button", name="Connect my notebook server")).to_be_visible()
    # With JavaScript the manual steps are folded away (still one click away).
    expect(frame.locator("#manual")).not_to_have_attribute("open", "")
    tool = page.frame(name="tool")
    assert "Learner" not in tool.inner_text("body")
    assert tool.url.startswith(pages_lms.live_server.url)  # a token never sits in a URL
    assert "token=" not in tool.url
    assert_accessible(tool)
    screenshot(page, "landing-student")


def test_instructor_is_not_called_a_student(pages_lms, notebooks, context):
    pages_lms.set_notebook_url(notebooks["good"].url + "/")
    page, frame = open_landing(pages_lms, context, roles=(INSTRUCTOR,))
    expect(frame.locator("#role")).to_have_text("instructor")
    expect(frame.locator("#person")).to_contain_text("user id")
    expect(frame.locator("#person")).not_to_contain_text("student id")
    expect(frame.get_by_role("button", name="Open the course dashboard")).to_be_visible()
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "landing-instructor")


def test_handoff_success_links_to_the_assignments_tab(pages_lms, notebooks, context):
    good = notebooks["good"]
    pages_lms.set_notebook_url(good.url + "/")
    sign_in_to(context, good)
    ctx = LmsContext.make()
    page, frame = open_landing(pages_lms, context, ctx=ctx)
    with context.expect_page() as opened:
        frame.get_by_role("button", name="Connect my notebook server").click()
    popup = opened.value
    status = frame.locator("#status")
    expect(status).to_contain_text("Done: your notebook server is connected", timeout=30_000)
    link = frame.get_by_role("link", name="Open the Assignments tab")
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", good.url + "/lab")
    expect(popup.locator("#lti-exchange-status")).to_contain_text("Connected")
    # The tokens are in the person's token store on the notebook server.
    stored = json.loads((good.role.home / ".lti-exchange" / "tokens.json").read_text())
    entries = stored["courses"].values()
    assert any(entry["service_url"] == pages_lms.live_server.url for entry in entries), stored
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "landing-handoff-done")
    popup.close()


def test_handoff_to_a_server_of_another_exchange_says_so(pages_lms, notebooks, context):
    other = notebooks["other"]
    pages_lms.set_notebook_url(other.url + "/")
    sign_in_to(context, other)
    page, frame = open_landing(pages_lms, context)
    with context.expect_page() as opened:
        frame.get_by_role("button", name="Connect my notebook server").click()
    status = frame.locator("#status")
    expect(status).to_contain_text(
        "The notebook server refused: This notebook server accepts tokens from another "
        "exchange URL, not from " + pages_lms.live_server.url,
        timeout=15_000,
    )
    expect(status).to_contain_text(f'c.Exchange.service_url = "{pages_lms.live_server.url}"')
    expect(status).to_have_attribute("data-state", "error")
    expect(frame.locator("#manual")).to_have_attribute("open", "")
    assert not (other.role.home / ".lti-exchange" / "tokens.json").exists()
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "landing-handoff-other-exchange")
    opened.value.close()


def test_handoff_to_a_server_without_an_exchange_url_says_so(pages_lms, notebooks, context):
    unset = notebooks["unset"]
    pages_lms.set_notebook_url(unset.url + "/")
    sign_in_to(context, unset)
    page, frame = open_landing(pages_lms, context)
    with context.expect_page() as opened:
        frame.get_by_role("button", name="Connect my notebook server").click()
    status = frame.locator("#status")
    expect(status).to_contain_text(
        "The notebook server refused: This notebook server has no exchange URL configured",
        timeout=15_000,
    )
    expect(status).to_contain_text(f'c.Exchange.service_url = "{pages_lms.live_server.url}"')
    screenshot(page, "landing-handoff-no-exchange-url")
    opened.value.close()


def test_handoff_to_a_stopped_server_times_out_with_what_to_check(pages_lms, notebooks, context):
    down = notebooks["down"]
    pages_lms.set_notebook_url(down + "/")
    with pytest.raises(requests.ConnectionError):
        requests.get(down, timeout=5)
    context.clock.install()  # the page's 10 s wait passes when the test says, not in real time
    page, frame = open_landing(pages_lms, context)
    with context.expect_page() as opened:
        frame.get_by_role("button", name="Connect my notebook server").click()
    status = frame.locator("#status")
    expect(status).to_contain_text("Opening your notebook server")
    context.clock.run_for(9_000)
    expect(status).to_contain_text("Opening your notebook server")  # still waiting at 9 s
    context.clock.run_for(1_500)
    expect(status).to_contain_text("did not answer within 10 seconds")
    expect(status).to_contain_text(f"open {down}/ and sign in or start it")
    expect(frame.get_by_role("button", name="Try again")).to_be_visible()
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "landing-handoff-server-down")
    opened.value.close()


def test_without_javascript_the_manual_steps_are_shown(pages_lms, notebooks, chromium):
    """The landing page HTML a launch produced, in a browser with JavaScript off."""
    pages_lms.set_notebook_url(notebooks["good"].url + "/")
    session = requests.Session()
    answer = pages_lms.platform.launch(session, roles=[LEARNER], accept_json=False)
    assert answer.status_code == 200 and SIGNED_IN in answer.text, answer.text[:2000]
    launch_url = pages_lms.live_server.url + "/lti/launch"
    profile = chromium.new_context(java_script_enabled=False, viewport=NARROW)
    try:
        page = profile.new_page()
        # The browser shows exactly what the tool answered (the POST's answer, replayed).
        page.route(
            launch_url,
            lambda route: route.fulfill(status=200, body=answer.text, headers=dict(answer.headers)),
        )
        page.goto(launch_url)
        expect(page.locator("h1")).to_have_text(SIGNED_IN)
        # What a person sees (rendered text): the <noscript> note.
        assert "JavaScript is off in this browser" in page.inner_text("#handoff")
        manual = page.locator("#manual textarea")
        expect(manual).to_be_visible()
        expect(manual).to_have_value(re.compile(r"^lti-exchange login --url \S+ --token \S+"))
        expect(page.get_by_role("button", name="Connect my notebook server")).to_be_hidden()
        assert fits_narrow_screen(page)
        screenshot(page, "landing-no-javascript-360px")
    finally:
        profile.close()


def test_landing_page_fits_a_narrow_frame_and_works_by_keyboard(pages_lms, notebooks, chromium):
    pages_lms.set_notebook_url(notebooks["good"].url + "/")
    profile = chromium.new_context(viewport=NARROW)
    try:
        url, _ = pages_lms.platform.prepare(storage=True, roles=(LEARNER,))
        page = profile.new_page()
        page.goto(url)
        tool = page.frame(name="tool")
        frame = page.frame_locator("#tool")
        expect(frame.get_by_role("heading", name=SIGNED_IN)).to_be_visible(timeout=15_000)
        # The tool's frame is 900 px wide in the simulated LMS: narrow the frame itself.
        page.evaluate("document.getElementById('tool').style.width = '360px'")
        assert tool.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"
        )
        # Keyboard: Tab reaches the connect button, which shows a visible focus ring.
        frame.locator("a, button:visible, summary").first.focus()
        for _ in range(10):
            page.keyboard.press("Tab")
            if tool.evaluate("document.activeElement && document.activeElement.id") == "connect":
                break
        assert tool.evaluate("document.activeElement.id") == "connect"
        outline = tool.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        # ... and on to "Connect by hand", which Enter unfolds.
        page.keyboard.press("Tab")
        assert tool.evaluate("document.activeElement.textContent") == "Connect by hand"
        page.keyboard.press("Enter")
        expect(frame.locator("#manual textarea")).to_be_visible()
        screenshot(page, "landing-360px-frame")
    finally:
        profile.close()


def test_instructor_binds_the_link_by_keyboard(pages_lms, notebooks, context):
    """The landing page's form for an unbound LMS link: "another id" is its own radio option."""
    pages_lms.set_notebook_url(notebooks["good"].url + "/")
    page, frame = open_landing(pages_lms, context, roles=(INSTRUCTOR,))
    expect(frame.locator("#assignment")).to_contain_text("not chosen yet")
    other = frame.get_by_role("radio", name="Another assignment id:")
    expect(other).to_be_checked()  # the course has no assignment yet: the only choice
    frame.get_by_label("Another assignment id", exact=True).fill("ps7")
    frame.get_by_role("button", name="Use this assignment").press("Enter")
    heading = frame.get_by_role("heading", name="The LMS link is now the assignment ps7")
    expect(heading).to_be_visible()
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "landing-link-bound")


def test_new_window_page_is_accessible(pages_lms, context):
    """The page a cookie-less frame without LMS storage gets (browser_binding)."""
    url, _ = pages_lms.platform.prepare(storage=False)
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("#tool")
    button = frame.get_by_role("button", name="Open in a new window")
    expect(button).to_be_visible()
    assert_accessible(page.frame(name="tool"))
    screenshot(page, "launch-new-window")
