"""A real headless Chromium (Debian's ``chromium`` package, driven by Playwright; never a
downloaded browser) that blocks third-party cookies, and a simulated LMS whose pages it loads.

``scripts/test.sh`` installs ``/usr/bin/chromium`` (apt) and ``playwright`` (the test extra).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.functional.lti.conftest import register_platform
from tests.lms.storage_frame import FramingPlatform

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Chrome's "third-party cookies blocked" mode (Chrome's phase-out; Safari and Firefox
    # strict block them too). The tool is served over plain HTTP here, so its state cookie is
    # SameSite=Lax, which a cross-site frame never keeps either (a Partitioned cookie, which
    # Chromium would keep in the frame, needs HTTPS): the tests check the frame has none.
    "--test-third-party-cookie-phaseout",
]


@pytest.fixture(scope="session")
def chromium() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lms(live_server):
    """A simulated LMS at http://localhost:<port> (the tool is at 127.0.0.1: another site)."""
    platform = FramingPlatform(live_server.url, name="Simulated Canvas").start()
    platform.org_id = register_platform(live_server, platform)["org_id"]
    yield platform
    platform.stop()


@pytest.fixture
def context(chromium):
    """One browser profile (its own cookies and storage)."""
    profile = chromium.new_context()
    yield profile
    profile.close()
