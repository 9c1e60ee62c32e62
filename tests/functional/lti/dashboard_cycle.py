"""One small nbgrader cycle over HTTP that leaves every dashboard count non-trivial.

Shared by the dashboard's HTTP tests (tests/functional/test_dashboard.py) and its browser test
(tests/browser/test_dashboard_in_browser.py): three students launched, ps1 released and due in
the past, two fetched and submitted (late), the first collected and given feedback, grades
pushed for both with the LMS refusing the second's.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from tests.functional.lti.helpers import describe, launched, notebook, release
from tests.functional.lti.test_grades import drain
from tests.lms.platform import INSTRUCTOR, LmsContext, LmsUser
from tests.support import TAR, make_tar

PAST = "2020-01-01T00:00:00Z"
REFUSAL = "Student suspended in the LMS"
COUNTS_AFTER = {
    "fetched": 2,
    "submitted": 2,
    "late": 2,
    "not_submitted": 1,
    "collected": 1,
    "feedback": 1,
    "sent": 1,
    "pending": 0,
    "failed": 1,
    "not_sendable": 0,
}


@dataclass
class Cycle:
    context: LmsContext
    teacher_user: LmsUser
    teacher: dict  # the instructor's launch answer
    people: list[tuple[LmsUser, dict]]  # each student and their launch answer
    first: str  # collected, feedback, grade sent
    second: str  # grade refused by the LMS

    @property
    def course(self) -> str:
        return self.teacher["course_id"]


def run_cycle(live_server, platform, title: str | None = None) -> Cycle:
    """The cycle above; the counts it leaves are ``COUNTS_AFTER``."""
    context = LmsContext.make(title=title) if title else LmsContext.make()
    teacher_user = LmsUser.make("Tess", "Teacher")
    teacher = launched(
        platform.launch(requests.Session(), user=teacher_user, roles=[INSTRUCTOR], context=context),
        "Instructor",
    )
    course, token = teacher["course_id"], teacher["access_token"]
    people = []
    for index in range(3):
        user = LmsUser.make(f"Student{index}", "Example")
        body = launched(platform.launch(requests.Session(), user=user, context=context), "Learner")
        people.append((user, body))
    release(live_server, course, token, "ps1")
    api = live_server.api
    answer = api("PUT", f"courses/{course}/assignments/ps1/due-date", token, json={"due_at": PAST})
    assert answer.status_code == 200, describe(answer)
    assert answer.json()["source"] == "instructor"

    ids = {}
    for _user, body in people[:2]:
        student = body["access_token"]
        fetched = api("GET", f"courses/{course}/assignments/ps1/archive", student)
        assert fetched.status_code == 200, describe(fetched)
        sent = api(
            "POST",
            f"courses/{course}/assignments/ps1/submissions",
            student,
            data=make_tar({"problem1.ipynb": notebook("1 + 1")}),
            headers=TAR,
        )
        assert sent.status_code == 201, describe(sent)
        ids[body["username"]] = sent.json()
    first, second = people[0][1]["username"], people[1][1]["username"]
    collected = api(
        "POST",
        f"courses/{course}/assignments/ps1/collection",
        token,
        json={"submission_ids": [ids[first]["id"]]},
    )
    assert collected.status_code == 200, describe(collected)
    collected.content  # noqa: B018 - read the stream to the end
    feedback = make_tar(
        {
            f"{first}/timestamp.txt": ids[first]["timestamp"].encode(),
            f"{first}/problem1.html": b"<p>good</p>",
        }
    )
    answer = api(
        "POST", f"courses/{course}/assignments/ps1/feedback", token, data=feedback, headers=TAR
    )
    assert answer.status_code == 201, describe(answer)
    platform.reject_user(people[1][0].sub, status=400, message=REFUSAL)
    try:
        answer = api(
            "POST",
            f"courses/{course}/grades",
            token,
            json={
                "grades": [
                    {"assignment_id": "ps1", "student_id": n, "score": 3, "max_score": 4}
                    for n in (first, second)
                ]
            },
        )
        assert answer.status_code == 200, describe(answer)
        assert drain(live_server)["failed"] == 1
    finally:
        platform.accept_user(people[1][0].sub)
    return Cycle(context, teacher_user, teacher, people, first, second)
