"""The number of SQL queries of a list does not grow with the course."""

from __future__ import annotations

import pytest

from tests.support import TAR, make_tar

# Query counts depend on the dialect (RETURNING, eager loads).
pytestmark = pytest.mark.all_backends


def query_counts(server, course: str, staff: str, student: str) -> dict[str, int]:
    calls = {
        "student assignments": ("courses/{c}/assignments", student),
        "student submissions": ("courses/{c}/submissions", student),
        "staff assignments": ("courses/{c}/assignments", staff),
        "staff submissions": ("courses/{c}/submissions", staff),
    }
    counts = {}
    for label, (template, token) in calls.items():
        answer = server.api("GET", template.format(c=course), token)
        assert answer.status_code == 200, answer.text
        counts[label] = int(answer.headers["X-Query-Count"])
    return counts


def populate(server, course: str, staff: str, assignments: int, students: int) -> str:
    body = make_tar({"problem1.ipynb": b"{}", "problem2.ipynb": b"{}"})
    tokens = [server.issue_token(f"s{i}", course) for i in range(students)]
    for a in range(assignments):
        name = f"ps{a}"
        assert (
            server.api(
                "POST",
                f"courses/{course}/assignments/{name}/releases",
                staff,
                data=body,
                headers=TAR,
            ).status_code
            == 201
        )
        stamps = {}
        for i, token in enumerate(tokens):
            answer = server.api(
                "POST",
                f"courses/{course}/assignments/{name}/submissions",
                token,
                data=body,
                headers=TAR,
            )
            assert answer.status_code == 201, answer.text
            stamps[f"s{i}"] = answer.json()["timestamp"]
        feedback = make_tar(
            {
                name_: data
                for student, stamp in stamps.items()
                for name_, data in (
                    (f"{student}/timestamp.txt", stamp.encode()),
                    (f"{student}/problem1.html", b"<p>well done</p>"),
                )
            }
        )
        answer = server.api(
            "POST",
            f"courses/{course}/assignments/{name}/feedback",
            staff,
            data=feedback,
            headers=TAR,
        )
        assert answer.status_code == 201, answer.text
    return tokens[0]


def test_list_queries_do_not_grow_with_course(live_server, course):
    small, large = course + "s", course + "l"
    staff_small = live_server.issue_token("teacher", small, "Instructor")
    staff_large = live_server.issue_token("teacher", large, "Instructor")
    student_small = populate(live_server, small, staff_small, assignments=1, students=1)
    student_large = populate(live_server, large, staff_large, assignments=6, students=5)

    few = query_counts(live_server, small, staff_small, student_small)
    many = query_counts(live_server, large, staff_large, student_large)
    assert few == many, (few, many)
    listing = live_server.api("GET", f"courses/{large}/submissions", staff_large).json()
    assert len(listing["submissions"]) == 30
    assert all(s["feedback"][0]["notebook_id"] == "problem1" for s in listing["submissions"])


def test_a_deadlines_fetch_and_submit_ask_the_database_as_little_as_they_can(live_server, course):
    """The burst's two requests: the authorising query also brings the assignment and its
    release (fetch: that query and the "fetched" event; submit: that query, the submission and
    its event). Refusals stay what they were."""
    staff = live_server.issue_token("teacher", course, "Instructor")
    body = make_tar({"problem1.ipynb": b"{}"})
    released = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/releases", staff, data=body, headers=TAR
    )
    assert released.status_code == 201, released.text
    student = live_server.issue_token("s1", course)

    fetch = live_server.api("GET", f"courses/{course}/assignments/ps1/archive", student)
    submit = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/submissions", student, data=body, headers=TAR
    )

    assert fetch.status_code == 200 and fetch.content == body
    assert submit.status_code == 201, submit.text
    assert submit.json()["release_notebooks"] == ["problem1"]
    assert (int(fetch.headers["X-Query-Count"]), int(submit.headers["X-Query-Count"])) == (2, 3)
    for method, path in (("GET", "archive"), ("POST", "submissions")):
        missing = live_server.api(
            method, f"courses/{course}/assignments/ps9/{path}", student, data=body, headers=TAR
        )
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "assignment_not_found"
    hidden = live_server.api("DELETE", f"courses/{course}/assignments/ps1/release", staff)
    assert hidden.status_code == 200, hidden.text
    for method, path in (("GET", "archive"), ("POST", "submissions")):
        answer = live_server.api(
            method, f"courses/{course}/assignments/ps1/{path}", student, data=body, headers=TAR
        )
        assert answer.status_code == 404, answer.text
        staff_answer = live_server.api(
            method, f"courses/{course}/assignments/ps1/{path}", staff, data=body, headers=TAR
        )
        assert staff_answer.status_code == (200 if method == "GET" else 409), staff_answer.text
