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
    # One renderer process for all the frames of a page: Playwright attaches to each
    # out-of-process iframe as Chromium starts it paused, and under load that hand-shake can
    # miss, leaving a cross-site frame (the tool inside the LMS page) stuck mid-navigation with
    # no timeout firing. Cookies, storage partitioning and postMessage do not depend on it.
    # (Not --disable-features: it would replace the list Playwright passes.)
    "--disable-site-isolation-trials",
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


# -- the pages' tests (tests/browser/test_landing_and_handoff.py, test_error_pages.py, ...) ----


class PagesPlatform:
    """A framing LMS whose registration names a notebook server (``--notebook-url-template``),
    which a test points at a running, misconfigured or stopped Jupyter server."""

    def __init__(self, live_server, platform: FramingPlatform) -> None:
        self.live_server = live_server
        self.platform = platform

    def set_notebook_url(self, url: str) -> None:
        from tests.functional.lti.conftest import lti_exchange

        p = self.platform
        args = ["platform", "add", "--issuer", p.issuer, "--client-id", p.client_id]
        args += ["--auth-login-url", p.auth_login_url, "--auth-token-url", p.auth_token_url]
        args += ["--key-set-url", p.key_set_url, "--name", f"{p.name} (pages)"]
        args += ["--notebook-url-template", url, "--json"]
        for deployment_id in p.clients[p.client_id]:
            args += ["--deployment-id", deployment_id]
        lti_exchange(self.live_server, *args)


@pytest.fixture(scope="session")
def pages_lms(live_server):
    platform = FramingPlatform(live_server.url, name="Simulated Moodle").start()
    register_platform(live_server, platform)
    yield PagesPlatform(live_server, platform)
    platform.stop()
