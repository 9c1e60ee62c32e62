"""Helpers for the page tests: the axe-core accessibility check, screenshots a person can look
at, and the narrow-screen (360 px) check.

axe-core comes from npm: ``scripts/test.sh`` installs it into ``.cache/npm`` (project-local).
Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Frame, Page, expect

from tests.conftest import ROOT

AXE = ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
NARROW = {"width": 360, "height": 740}

# A loaded test machine (Jupyter servers, the LMS, the tool) can be slow: waiting is not asserting.
expect.set_options(timeout=10_000)


def axe_violations(target: Page | Frame) -> list[dict]:
    """Serious and critical axe-core violations of the page (or frame) as it is now."""
    assert AXE.is_file(), f"{AXE} is missing: run scripts/test.sh (npm install of axe-core)"
    if not target.evaluate("typeof window.axe !== 'undefined'"):
        target.add_script_tag(path=str(AXE))
    results = target.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})); }"
    )
    return [v for v in results if v["impact"] in ("serious", "critical")]


def assert_accessible(target: Page | Frame) -> None:
    found = axe_violations(target)
    assert found == [], found


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tool = page.frame(name="tool")
    if tool is not None:  # the simulated LMS's tool frame: tall enough to show all of it
        height = tool.evaluate("document.documentElement.scrollHeight")
        page.evaluate(f"document.getElementById('tool').style.height = '{height + 24}px'")
    path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def fits_narrow_screen(page: Page) -> bool:
    """At 360 px wide nothing scrolls sideways."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"
    )
