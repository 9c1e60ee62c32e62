"""A deadline: many students submit at once, some twice on one kept-alive connection. Every
submission answered 201 is stored whole and listed (bodies are read straight from the socket into
a reused buffer, and blob and database flushes are shared between uploads finishing together)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support import NOTEBOOK, TAR, make_tar, make_tgz

MiB = 1024 * 1024
STUDENTS = 24


def test_a_burst_of_submissions_is_stored_whole_and_listed(live_server, course):
    teacher = live_server.issue_token("teacher", course, "Instructor")
    released = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=make_tar({"ps1.ipynb": NOTEBOOK}),
        headers=TAR,
    )
    assert released.status_code == 201, released.text
    tokens = [live_server.issue_token(f"s{i:02d}", course) for i in range(STUDENTS)]

    def student(i: int) -> list[tuple[int, str]]:
        stored = []
        with requests.Session() as http:  # one connection: the second upload follows the first
            for round_ in range(2):
                files = {"ps1.ipynb": os.urandom(MiB + 1000 * i + round_), "data/x.csv": b"1,2"}
                body = make_tgz(files) if (i + round_) % 3 == 0 else make_tar(files)
                answer = http.post(
                    f"{live_server.url}/api/v1/courses/{course}/assignments/ps1/submissions",
                    data=body,
                    headers={**TAR, "Authorization": f"Bearer {tokens[i]}"},
                    timeout=120,
                )
                assert answer.status_code == 201, answer.text
                assert answer.json()["sha256"] == hashlib.sha256(body).hexdigest()
                assert answer.json()["size"] == len(body)
                stored.append((answer.json()["id"], hashlib.sha256(body).hexdigest()))
        return stored

    with ThreadPoolExecutor(12) as pool:
        stored = [item for items in pool.map(student, range(STUDENTS)) for item in items]

    listed = live_server.api(
        "GET", f"courses/{course}/submissions", teacher, params={"assignment_id": "ps1"}
    ).json()["submissions"]
    assert sorted((s["id"], s["sha256"]) for s in listed) == sorted(stored)
    for submission_id, sha256 in stored[:: STUDENTS // 4]:
        archive = live_server.api(
            "GET", f"courses/{course}/submissions/{submission_id}/archive", teacher
        )
        assert hashlib.sha256(archive.content).hexdigest() == sha256
