"""The instructor dashboard and the student view, over HTTP against the live service.

A small cycle (launch, release, fetch, submit, collect, feedback, grades through the simulated
LMS with one refused) and the counts it produced, on the page and in its JSON twin; due dates and
extensions change the late flag; the retry action queues a failed grade again; learners see
neither the dashboard nor its actions; the page's query count does not grow with the course.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import requests
from sqlalchemy import select

from lti_exchange.lti.dashboard_views import open_page_session
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, Grade, GradeOutbox, User
from tests.functional.lti.conftest import platform  # noqa: F401 - the simulated LMS fixture
from tests.functional.lti.dashboard_cycle import COUNTS_AFTER, REFUSAL, run_cycle
from tests.functional.lti.helpers import bearer, describe, launched
from tests.functional.lti.test_grades import drain
from tests.functional.test_query_counts import populate
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext

PAST, FUTURE = "2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z"


class Counts(HTMLParser):
    """``{assignment: {count name: value}}`` from the course page's ``data-count`` cells."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, dict[str, int]] = {}
        self.rows: dict[str, str] = {}
        self._assignment: str | None = None
        self._count: str | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "section" and "data-assignment" in values:
            self._assignment = values["data-assignment"]
            self.counts[self._assignment] = {}
        if tag == "dd" and "data-count" in values:
            self._count = values["data-count"]
        if tag == "tr" and "data-late" in values:
            self.rows[values["data-assignment"]] = values["data-late"]

    def handle_data(self, data):
        if self._count and self._assignment and data.strip():
            self.counts[self._assignment][self._count] = int(data)
            self._count = None


def parsed(page: str) -> Counts:
    parser = Counts()
    parser.feed(page)
    return parser


def page_session_of(answer: requests.Response) -> str:
    assert answer.status_code == 200, describe(answer)
    found = re.search(r'name="page_session" value="([^"]+)"', answer.text)
    assert found, answer.text[:3000]
    return found.group(1)


def post(live_server, path: str, session: str, **fields) -> requests.Response:
    return requests.post(
        f"{live_server.url}/lti/{path}", data={"page_session": session, **fields}, timeout=60
    )


def html_launch(platform, **kwargs) -> str:  # noqa: F811 - the fixture's value
    return page_session_of(platform.launch(requests.Session(), accept_json=False, **kwargs))


def test_the_dashboard_shows_what_a_cycle_did(live_server, platform):  # noqa: F811
    cycle = run_cycle(live_server, platform)
    context, people, second = cycle.context, cycle.people, cycle.second
    course, token = cycle.course, cycle.teacher["access_token"]
    api = live_server.api
    staff_page = html_launch(platform, user=cycle.teacher_user, roles=[INSTRUCTOR], context=context)

    page = post(live_server, "dashboard", staff_page)
    assert page.status_code == 200, describe(page)
    assert parsed(page.text).counts["ps1"] == COUNTS_AFTER
    assert REFUSAL in page.text
    assert "<svg" in page.text and "frame-ancestors" in page.headers["Content-Security-Policy"]
    twin = api("GET", f"courses/{course}/dashboard", token)
    assert twin.status_code == 200, describe(twin)
    [ps1] = twin.json()["assignments"]
    assert (ps1["fetched"], ps1["submitted"], ps1["late"], ps1["not_submitted"]) == (2, 2, 2, 1)
    assert ps1["failed_grades"] == [
        {"student_id": second, "reason": ps1["failed_grades"][0]["reason"]}
    ]
    assert ps1["due_at"].startswith("2020-01-01 00:00:00")

    # An extension for the second student: no longer late, on both pages.
    detail = post(live_server, "dashboard/student", staff_page, student=second)
    assert parsed(detail.text).rows == {"ps1": "yes"}, detail.text[:2000]
    extended = post(
        live_server,
        "dashboard/extension",
        staff_page,
        student=second,
        assignment="ps1",
        due_at="2100-01-01T00:00",
    )
    assert extended.status_code == 200, describe(extended)
    assert parsed(extended.text).rows == {"ps1": "no"}
    assert parsed(post(live_server, "dashboard", staff_page).text).counts["ps1"]["late"] == 1
    listing = api("GET", f"courses/{course}/assignments/ps1/due-dates", token).json()
    assert listing["extensions"] == [
        {
            "student_id": second,
            "due_at": "2100-01-01 00:00:00.000000 UTC",
            "extension_seconds": listing["extensions"][0]["extension_seconds"],
        }
    ]
    assert listing["extensions"][0]["extension_seconds"] > 80 * 365 * 86400

    # The learner's own view shows the first student's submission as late.
    learner_page = html_launch(platform, user=people[0][0], context=context)
    mine = post(live_server, "my-assignments", learner_page)
    assert mine.status_code == 200, describe(mine)
    assert parsed(mine.text).rows == {"ps1": "yes"}
    assert "ready" in mine.text  # the feedback
    own = api("GET", f"courses/{course}/my-assignments", people[0][1]["access_token"]).json()
    assert own["assignments"][0]["late"] is True
    assert own["assignments"][0]["grade"]["status"] == "sent"

    # Retry: the failed grade is queued again and then reaches the LMS.
    retried = post(live_server, "dashboard/retry", staff_page, student=second, assignment="ps1")
    assert retried.status_code == 200, describe(retried)
    assert parsed(retried.text).counts["ps1"]["pending"] == 1
    with live_server.state().session_factory() as session:
        grade = session.execute(
            select(Grade).where(Grade.student_id == second, Grade.assignment_name == "ps1")
        ).scalar_one()
        assert grade.status == "pending"
        assert session.execute(
            select(GradeOutbox).where(GradeOutbox.grade_id == grade.id)
        ).scalar_one()
    assert drain(live_server)["sent"] == 1
    again = post(live_server, "dashboard/retry", staff_page, student=second, assignment="ps1")
    assert again.status_code == 409 and "only a failed grade" in again.text


def test_learners_cannot_see_the_dashboard_or_retry(live_server, platform):  # noqa: F811
    context = LmsContext.make()
    teacher = launched(platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context))
    learner = launched(platform.launch(requests.Session(), roles=[LEARNER], context=context))
    learner_page = html_launch(platform, roles=[LEARNER], context=context)
    course = teacher["course_id"]
    for path, fields in (
        ("dashboard", {}),
        ("dashboard/student", {"student": teacher["username"]}),
        ("dashboard/retry", {"student": learner["username"], "assignment": "ps1"}),
        (
            "dashboard/extension",
            {"student": learner["username"], "assignment": "ps1", "due_at": FUTURE},
        ),
        ("dashboard/due-date", {"assignment": "ps1", "due_at": FUTURE}),
    ):
        answer = post(live_server, path, learner_page, **fields)
        assert answer.status_code == 403, describe(answer)
        assert "instructors and teaching assistants" in answer.text
    for method, path, body in (
        ("GET", "dashboard", None),
        ("POST", "grades/retry", {"assignment_id": "ps1", "student_id": learner["username"]}),
        ("PUT", "assignments/ps1/due-date", {"due_at": FUTURE}),
    ):
        answer = requests.request(
            method,
            f"{live_server.url}/api/v1/courses/{course}/{path}",
            json=body,
            headers=bearer(learner["access_token"]),
            timeout=60,
        )
        assert answer.status_code == 403, describe(answer)
        assert answer.json()["error"]["code"] == "role_forbidden"
    # No page session, a made-up one, or a form from another site: refused.
    assert post(live_server, "dashboard", "").status_code == 401
    assert post(live_server, "dashboard", "x" * 43).status_code == 401
    staff_page = html_launch(platform, roles=[INSTRUCTOR], context=context)
    cross = requests.post(
        f"{live_server.url}/lti/dashboard",
        data={"page_session": staff_page},
        headers={"Origin": "https://attacker.example"},
        timeout=60,
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert post(live_server, "dashboard", staff_page).status_code == 200


def test_an_lms_due_date_from_a_custom_parameter_is_recorded(live_server, platform):  # noqa: F811
    context = LmsContext.make()
    teacher = launched(
        platform.launch(
            requests.Session(),
            roles=[INSTRUCTOR],
            context=context,
            custom={"nbgrader_assignment_id": "hw1", "due_at": "2031-05-01T12:00:00Z"},
        )
    )
    listing = live_server.api(
        "GET", f"courses/{teacher['course_id']}/assignments/hw1/due-dates", teacher["access_token"]
    ).json()
    assert listing["due_at"] == "2031-05-01 12:00:00.000000 UTC" and listing["source"] == "lms"
    # An unsubstituted variable changes nothing; an instructor's date is not overwritten.
    platform.launch(
        requests.Session(),
        roles=[INSTRUCTOR],
        context=context,
        custom={"nbgrader_assignment_id": "hw1", "due_at": "$ResourceLink.submission.endDateTime"},
    )
    token = teacher["access_token"]
    path = f"courses/{teacher['course_id']}/assignments/hw1/due-date"
    assert live_server.api("PUT", path, token, json={"due_at": FUTURE}).status_code == 200
    platform.launch(
        requests.Session(),
        roles=[INSTRUCTOR],
        context=context,
        custom={"nbgrader_assignment_id": "hw1", "due_at": "2032-01-01T00:00:00Z"},
    )
    listing = live_server.api(
        "GET", f"courses/{teacher['course_id']}/assignments/hw1/due-dates", token
    ).json()
    assert listing["due_at"] == "2100-01-01 00:00:00.000000 UTC"
    bad = live_server.api("PUT", path, token, json={"due_at": "next tuesday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_due_date"


def staff_session(live_server, course_code: str) -> str:
    """A page session for the course's ``teacher`` (as a launch opens one)."""
    state = live_server.state()
    with state.session_factory() as session:
        course = session.execute(select(Course).where(Course.code == course_code)).scalar_one()
        user = session.execute(
            select(User).where(User.username == "teacher", User.org_id == course.org_id)
        ).scalar_one()
        ids = (user.id, course.id)
    return open_page_session(*ids, DatabaseStore(state.session_factory))


@pytest.mark.all_backends  # query counts depend on the dialect
def test_dashboard_query_count_does_not_grow_with_the_course(live_server, course):
    counts = []
    for suffix, assignments, students in (("s", 1, 1), ("l", 5, 6)):
        code = course + suffix
        staff = live_server.issue_token("teacher", code, "Instructor")
        populate(live_server, code, staff, assignments=assignments, students=students)
        path = f"courses/{code}/assignments/ps0/due-date"
        assert live_server.api("PUT", path, staff, json={"due_at": PAST}).status_code == 200
        session = staff_session(live_server, code)
        page = post(live_server, "dashboard", session)
        assert page.status_code == 200, describe(page)
        assert len(parsed(page.text).counts) == assignments
        student = post(live_server, "dashboard/student", session, student="s0")
        twin = live_server.api("GET", f"courses/{code}/dashboard", staff)
        assert twin.status_code == 200 and student.status_code == 200
        assert twin.json()["assignments"][0]["late"] == students
        counts.append(
            {
                "page": int(page.headers["X-Query-Count"]),
                "student": int(student.headers["X-Query-Count"]),
                "api": int(twin.headers["X-Query-Count"]),
            }
        )
    assert counts[0] == counts[1], counts
