"""Concurrent writes of the same thing: every request succeeds, nothing is duplicated.

Run on every backend: the races live in the database (SQLite's single writer and stale
snapshots, PostgreSQL's row locks, InnoDB's gap locks and deadlocks).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from tests.support import TAR, make_tar

# The races live in the database.
pytestmark = pytest.mark.all_backends

CONCURRENCY = 8  # the live server's 2 workers x 4 threads: all in flight at once


def together(count: int, call) -> list:
    """Run ``call(i)`` for i in range(count) on as many threads, started at the same moment."""
    barrier = Barrier(count)

    def run(index: int):
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def release(live_server, course: str, token: str, index: int):
    archive = make_tar({"p1.ipynb": b'{"n": %d}' % index})
    return live_server.api(
        "POST", f"courses/{course}/assignments/ps1/releases", token, data=archive, headers=TAR
    )


def test_concurrent_releases_all_succeed_with_consecutive_versions(live_server, course):
    teacher = live_server.issue_token("teacher", course, "Instructor")
    for first in (1, CONCURRENCY + 1):  # the first round also races to create the assignment
        answers = together(CONCURRENCY, lambda i: release(live_server, course, teacher, i))
        assert [a.status_code for a in answers] == [201] * CONCURRENCY, [a.text for a in answers]
        versions = sorted(a.json()["version"] for a in answers)
        assert versions == list(range(first, first + CONCURRENCY))
    listed = live_server.api("GET", f"courses/{course}/assignments", teacher).json()
    assert [a["assignment_id"] for a in listed["assignments"]] == ["ps1"]
    assert listed["assignments"][0]["release"]["version"] == 2 * CONCURRENCY


def test_concurrent_first_pushes_of_one_grade_all_succeed(live_server, course):
    teacher = live_server.issue_token("teacher", course, "Instructor")
    live_server.issue_token("alice", course, "Learner")
    body = {"grades": [{"assignment_id": "ps1", "student_id": "alice", "score": 3, "max_score": 5}]}

    def push(_index: int):
        return live_server.api("POST", f"courses/{course}/grades", teacher, json=body)

    answers = together(CONCURRENCY, push)
    assert [a.status_code for a in answers] == [200] * CONCURRENCY, [a.text for a in answers]
    status = live_server.api("GET", f"courses/{course}/grades", teacher).json()
    assert [(g["student_id"], g["score"]) for g in status["grades"]] == [("alice", 3.0)]
    # A changed score pushed concurrently is recorded once too.
    body["grades"][0]["score"] = 4
    answers = together(CONCURRENCY, push)
    assert [a.status_code for a in answers] == [200] * CONCURRENCY, [a.text for a in answers]
    status = live_server.api("GET", f"courses/{course}/grades", teacher).json()
    assert [(g["student_id"], g["score"]) for g in status["grades"]] == [("alice", 4.0)]
