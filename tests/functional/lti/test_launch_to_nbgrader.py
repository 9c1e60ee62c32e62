"""From an LMS launch to the real nbgrader command line: the student launches through the real
OIDC flow, hands the launched tokens to ``lti-exchange login`` in a HOME of their own, and then
``nbgrader fetch_assignment`` and ``nbgrader submit`` work with no other identity configured.
The instructor, launched from the same LMS course, sees the submission."""

from __future__ import annotations

import json

import requests

from tests.end_to_end.helpers import BIN, Role, no_traceback
from tests.functional.lti.helpers import describe, launched, release
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser


def test_launch_then_fetch_and_submit_with_the_real_nbgrader(live_server, platform, tmp_path):
    context = LmsContext.make(title="Data Science with Notebooks")
    with requests.Session() as teacher_browser, requests.Session() as student_browser:
        teacher = launched(
            platform.launch(
                teacher_browser,
                user=LmsUser.make("Grace", "Hopper"),
                context=context,
                roles=[INSTRUCTOR],
            ),
            "Instructor",
        )
        student_user = LmsUser.make("Linus", "Student", preferred_username=None)
        student = launched(
            platform.launch(student_browser, user=student_user, context=context, roles=[LEARNER]),
            "Learner",
        )
    course = teacher["course_id"]
    assert student["course_id"] == course
    release(live_server, course, teacher["access_token"], "ps1")

    # a user with nothing but the service URL in their nbgrader config, and no token variable
    learner = Role("learner", tmp_path, live_server.url)
    assert "LTI_EXCHANGE_TOKEN" not in learner.env
    assert not (learner.home / ".lti-exchange").exists()
    learner.run(
        str(BIN / "lti-exchange"),
        "login",
        "--url",
        live_server.url,
        "--token",
        student["access_token"],
        "--refresh-token",
        student["refresh_token"],
    )
    store = json.loads((learner.home / ".lti-exchange" / "tokens.json").read_text())
    assert course in json.dumps(store), store

    listed = learner.nbgrader("list", "--course", course)
    assert listed.lines(f"{course} ps1"), listed.output
    fetched = learner.nbgrader("fetch_assignment", "ps1", "--course", course)
    no_traceback(fetched)
    notebook = learner.work / "ps1" / "problem1.ipynb"
    assert notebook.is_file(), fetched.output
    work = json.loads(notebook.read_text())
    work["cells"][0]["source"] = "answer = 42"
    notebook.write_text(json.dumps(work))
    submitted = learner.nbgrader("submit", "ps1", "--course", course)
    no_traceback(submitted)

    answer = live_server.api("GET", f"courses/{course}/submissions", teacher["access_token"])
    assert answer.status_code == 200, describe(answer)
    mine = [
        s
        for s in answer.json()["submissions"]
        if s["assignment_id"] == "ps1" and s["student_id"] == student["username"]
    ]
    assert len(mine) == 1, answer.json()
    assert mine[0]["student"]["lms_user_id"] == student_user.sub
    assert mine[0]["student"]["email"] == student_user.email
    # the student id is the launched username, not the OS user or the Role's name
    assert student["username"] != "learner"
