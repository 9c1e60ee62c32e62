"""The plugin renews an expired access token with its refresh token, by itself; a revoked
session tells the student to launch from the LMS again."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from sqlalchemy import select

from tests.end_to_end.helpers import BIN, Role
from tests.functional.test_smoke import make_tar

# Drives nbgrader/Jupyter above the HTTP API: the database makes no difference here.
pytestmark = pytest.mark.one_backend


def refresh_token_for(server, username: str, course: str) -> str:
    from lti_exchange.models import Course, Enrolment, User
    from lti_exchange.refresh import token_pair

    state = server.state()
    with state.session_factory() as session:
        enrolment = session.execute(
            select(Enrolment)
            .join(User, User.id == Enrolment.user_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(User.username == username, Course.code == course)
        ).scalar_one()
        pair = token_pair(state, session, enrolment)
        session.commit()
        return pair["refresh_token"]


def expired_token(server, username: str, course: str) -> str:
    server.issue_token(username, course)  # make sure the enrolment exists
    from lti_exchange.models import Course, Enrolment, User

    state = server.state()
    with state.session_factory() as session:
        enrolment = session.execute(
            select(Enrolment)
            .join(User, User.id == Enrolment.user_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(User.username == username, Course.code == course)
        ).scalar_one()
        return state.tokens.mint(
            user_id=enrolment.user_id,
            org_id=enrolment.course.org_id,
            username=username,
            course_id=course,
            course_title=None,
            role="Learner",
            now=int(time.time()) - 7200,
            ttl=600,
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
    old_refresh = refresh_token_for(live_server, "dana", course)
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
    refresh = refresh_token_for(live_server, "erin", course)
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
