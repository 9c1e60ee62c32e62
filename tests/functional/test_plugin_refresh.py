"""The plugin renews an expired access token with its refresh token, by itself; a revoked
session tells the student to launch from the LMS again."""

from __future__ import annotations

import json
import subprocess
import time

from tests.end_to_end.helpers import BIN, Role
from tests.factories import issue_access_token, issue_refresh_token
from tests.support import make_tar


def expired_token(server, username: str, course: str) -> str:
    """An access token for ``username`` that expired an hour and fifty minutes ago."""
    return issue_access_token(
        server.state(), username, course, now=int(time.time()) - 7200, ttl=600
    )


def write_store(role: Role, server, course: str, access: str, refresh: str) -> None:
    store = role.home / ".lti-exchange" / "tokens.json"
    store.parent.mkdir(exist_ok=True)
    claims = {"course_id": course, "username": role.name}
    store.write_text(
        json.dumps(
            {
                "courses": {
                    course: {
                        "access_token": access,
                        "refresh_token": refresh,
                        "service_url": server.url,
                        "username": claims["username"],
                        "expires_at": int(time.time()) - 60,
                    }
                }
            }
        )
    )


def test_plugin_refreshes_expired_access_token(live_server, course, tmp_path):
    teacher = live_server.issue_token("teacher", course, "Instructor")
    assert (
        live_server.api(
            "POST",
            f"courses/{course}/assignments/ps1/releases",
            teacher,
            data=make_tar({"p1.ipynb": b"{}"}),
            headers={"Content-Type": "application/x-tar"},
        ).status_code
        == 201
    )
    dana = Role("dana", tmp_path, live_server.url)
    old_access = expired_token(live_server, "dana", course)
    old_refresh = issue_refresh_token(live_server.state(), "dana", course)
    write_store(dana, live_server, course, old_access, old_refresh)

    listed = dana.nbgrader("list", "--course", course)
    assert listed.lines(f"{course} ps1")
    stored = json.loads((dana.home / ".lti-exchange" / "tokens.json").read_text())
    entry = stored["courses"][course]
    assert entry["access_token"] != old_access
    assert entry["refresh_token"] not in (None, old_refresh)
    assert entry["expires_at"] > time.time()


def test_revoked_session_says_launch_again(live_server, course, tmp_path):
    erin = Role("erin", tmp_path, live_server.url)
    access = expired_token(live_server, "erin", course)
    refresh = issue_refresh_token(live_server.state(), "erin", course)
    write_store(erin, live_server, course, access, refresh)
    subprocess.run(
        [str(BIN / "lti-exchange"), "token", "revoke", "--user", "erin", "--course", course],
        env=live_server.env,
        check=True,
        capture_output=True,
    )
    refused = erin.nbgrader("list", "--course", course, expect=1)
    assert "Launch the assignment from your LMS again" in refused.output
    assert "Traceback" not in refused.output
