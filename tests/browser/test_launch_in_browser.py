"""Launches in a real browser inside the LMS's iframe with third-party cookies blocked.

- With the platform's storage frame (``lti_storage_target``): the login page stores the state
  there, the launch page reads it back and proves it: the landing page shows.
- The same ``id_token`` + ``state`` posted in a second browser (login CSRF): that browser's
  platform storage does not hold the state: no tokens, the new-window page.
- A platform without storage: the new-window page, whose button starts the login again in a new
  top-level window.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.lms.storage_frame import FramingPlatform

pytestmark = pytest.mark.one_backend  # the browser's behaviour, not the database's

SIGNED_IN = "You are signed in to the nbgrader exchange"
NEW_WINDOW = "Open the assignment in a new window"


def tool_cookies(context, live_server) -> list[dict]:
    return [c for c in context.cookies(live_server.url) if c["name"].startswith("lti1p3-")]


def test_storage_launch_in_a_cookie_less_frame_is_accepted(
    live_server, lms: FramingPlatform, context
):
    url, _record = lms.prepare(storage=True)
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("#tool")
    # (The storage check page, with two headings, comes first: wait for the landing page's.)
    expect(frame.get_by_role("heading", name=SIGNED_IN)).to_be_visible(timeout=15_000)
    expect(frame.locator("#lti-exchange-tokens")).to_have_count(1)
    # It was the storage proof that completed it: the frame holds no cookie of the tool.
    assert page.frame(name="tool").url == live_server.url + "/lti/launch/bind"
    assert tool_cookies(context, live_server) == []


def test_storage_launch_in_a_new_window_finds_the_storage_through_its_opener(
    live_server, lms: FramingPlatform, context
):
    """An LMS that opens the tool in a new window: the launch POST from the LMS is cross-site,
    so the tool's (Lax) state cookie stays behind; the storage frame in the opener binds it."""
    url, _record = lms.prepare(storage=True, new_window=True)
    page = context.new_page()
    page.goto(url)
    with page.expect_popup() as opened:
        page.click("#open")
    tool = opened.value
    expect(tool.get_by_role("heading", name=SIGNED_IN)).to_be_visible(timeout=15_000)
    expect(tool.locator("#lti-exchange-tokens")).to_have_count(1)
    assert tool.url == live_server.url + "/lti/launch/bind"  # the storage proof completed it


def test_id_token_and_state_posted_in_another_browser_are_refused(
    live_server, lms: FramingPlatform, chromium
):
    attacker, victim = chromium.new_context(), chromium.new_context()
    try:
        url, record = lms.prepare(storage=True, hold=True)
        own = attacker.new_page()
        own.goto(url)
        # The attacker's login stored its state in the attacker's LMS storage; the platform
        # answered the id_token form, which is held (not posted).
        expect(own.frame_locator("#tool").get_by_role("button", name="Continue")).to_be_visible()
        assert record.id_token and record.state

        page = victim.new_page()
        page.goto(lms.replay_page(record))
        frame = page.frame_locator("#tool")
        expect(frame.locator("#new-window")).to_be_visible()
        expect(frame.locator("#new-window")).to_have_attribute(
            "data-reason", "no value for state_" + record.state
        )
        expect(frame.locator("h1").filter(has_text=NEW_WINDOW)).to_be_visible()
        content = page.frame(name="tool").content()
        assert SIGNED_IN not in content and "refresh_token" not in content
        assert page.frame(name="tool").url == live_server.url + "/lti/launch"
    finally:
        attacker.close()
        victim.close()


def test_without_storage_and_cookies_the_launch_offers_a_new_window(
    live_server, lms: FramingPlatform, context
):
    url, record = lms.prepare(storage=False)
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("#tool")
    expect(frame.locator("h1")).to_have_text(NEW_WINDOW)
    content = page.frame(name="tool").content()
    assert SIGNED_IN not in content and "refresh_token" not in content
    assert tool_cookies(context, live_server) == []
    logins = len(lms.auth_requests)
    with context.expect_page() as opened:
        frame.get_by_role("button", name="Open in a new window").click()
    window = opened.value
    # The new top-level window starts the login again with the platform's own parameters, and
    # keeps the state cookie there (first-party). (It completes under HTTPS, where the cookie is
    # SameSite=None; over this plain-HTTP test server the cookie is SameSite=Lax and the LMS's
    # cross-site form POST leaves it behind: tests/functional/lti/test_browser_binding.py
    # completes a new-window login with a cookie-keeping client.)
    expect(window).to_have_url(live_server.url + "/lti/launch")
    assert len(lms.auth_requests) > logins
    assert lms.auth_requests[-1]["login_hint"] == record.login_params["login_hint"]
    assert lms.auth_requests[-1]["lti_message_hint"] == record.login_params["lti_message_hint"]
    assert len(tool_cookies(context, live_server)) == 1  # set in the top-level window
