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
