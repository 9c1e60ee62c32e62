"""Collect writes the exchange's due date and each student's extension into nbgrader's
gradebook, so autograde's late penalty agrees with the dashboard (real nbgrader, in process)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from nbgrader.api import Gradebook

from tests.end_to_end.helpers import Role

DUE = "2020-01-01T00:00:00Z"
EXTENDED = "2100-01-01T00:00:00Z"


def three_roles(live_server, tmp_path, course: str) -> tuple[Role, Role, Role, str]:
    """The instructor ``teacher`` and the students ``alice`` and ``bob``, logged in to
    ``course``, and the instructor's access token."""
    url = live_server.url
    teacher = Role("teacher", tmp_path, url)
    alice, bob = Role("alice", tmp_path, url), Role("bob", tmp_path, url)
    staff = live_server.issue_token("teacher", course, "Instructor")
    teacher.login(url, staff)
    for student in (alice, bob):
        student.login(url, live_server.issue_token(student.name, course, "Learner"))
    return teacher, alice, bob, staff


def test_collect_writes_due_date_and_extension_into_the_gradebook(live_server, tmp_path):
    course = f"due{uuid.uuid4().hex[:6]}"
    teacher, alice, bob, staff = three_roles(live_server, tmp_path, course)
    root = teacher.quickstart(course)
    teacher.nbgrader("db", "assignment", "add", "ps1", cwd=root)  # no due date in nbgrader
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)
    for student in (alice, bob):
        student.nbgrader("fetch_assignment", "ps1", "--course", course)
        student.nbgrader("submit", "ps1", "--course", course)

    # The dashboard's due date (long past) and alice's extension (far ahead).
    base = f"courses/{course}/assignments/ps1"
    assert live_server.api("PUT", f"{base}/due-date", staff, json={"due_at": DUE}).ok
    answer = live_server.api("PUT", f"{base}/extensions/alice", staff, json={"due_at": EXTENDED})
    assert answer.status_code == 200, answer.text

    teacher.nbgrader("collect", "ps1", cwd=root)
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    with Gradebook(db_url, course) as gb:
        assert gb.find_assignment("ps1").duedate == datetime(2020, 1, 1)
        assert gb.find_submission("ps1", "alice").duedate == datetime(2100, 1, 1)
        assert gb.find_submission("ps1", "bob").extension is None

    teacher.nbgrader("autograde", "ps1", cwd=root)
    with Gradebook(db_url, course) as gb:
        assert gb.find_submission("ps1", "alice").total_seconds_late == 0
        assert gb.find_submission("ps1", "bob").total_seconds_late > 0

    # Taking the extension back on the dashboard: the next collect clears it in the gradebook.
    answer = live_server.api("PUT", f"{base}/extensions/alice", staff, json={"due_at": None})
    assert answer.status_code == 200 and answer.json()["extensions"] == []
    teacher.nbgrader("collect", "ps1", cwd=root)
    with Gradebook(db_url, course) as gb:
        assert gb.find_submission("ps1", "alice").extension is None
        late = gb.find_submission("ps1", "alice")
        assert late.duedate == datetime(2020, 1, 1) and late.timestamp - late.duedate > timedelta(0)


def test_collect_before_the_due_date_takes_each_students_last_submission_on_time(
    live_server, tmp_path
):
    course = f"ontime{uuid.uuid4().hex[:6]}"
    teacher, alice, bob, staff = three_roles(live_server, tmp_path, course)
    root = teacher.quickstart(course)
    teacher.nbgrader("generate_assignment", "ps1", cwd=root)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)
    base = f"courses/{course}/assignments/ps1"

    def stamps() -> dict[str, list[str]]:
        listed = live_server.api("GET", f"courses/{course}/submissions", staff).json()
        found: dict[str, list[str]] = {}
        for item in listed["submissions"]:
            found.setdefault(item["student_id"], []).append(item["timestamp"])
        return {student: sorted(times) for student, times in found.items()}

    for student in (alice, bob):
        student.nbgrader("fetch_assignment", "ps1", "--course", course)
        student.nbgrader("submit", "ps1", "--course", course)
    first = max(times[0] for times in stamps().values())
    due = datetime.fromisoformat(first.removesuffix(" UTC")) + timedelta(milliseconds=1)
    due_at = due.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert live_server.api("PUT", f"{base}/due-date", staff, json={"due_at": due_at}).ok
    answer = live_server.api("PUT", f"{base}/extensions/bob", staff, json={"due_at": EXTENDED})
    assert answer.status_code == 200, answer.text
    for student in (alice, bob):  # both late, but bob has an extension
        student.nbgrader("submit", "ps1", "--course", course)
    times = stamps()
    assert all(len(each) == 2 for each in times.values()), times

    teacher.nbgrader("collect", "--before-duedate", "ps1", cwd=root)

    def collected(student: str) -> str:
        return (root / "submitted" / student / "ps1" / "timestamp.txt").read_text().strip()

    assert collected("alice") == times["alice"][0]  # the one before the due date
    assert collected("bob") == times["bob"][1]  # the newest: all within the extension

    teacher.nbgrader("collect", "--update", "ps1", cwd=root)
    assert collected("alice") == times["alice"][1]  # without the option, the newest
