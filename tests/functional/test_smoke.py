"""The live service answers health checks and the basic API round trip."""

import pytest

from tests.support import make_tar


def test_healthz(live_server):
    import requests

    answer = requests.get(live_server.url + "/healthz", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


@pytest.mark.all_backends  # one plain cycle on each backend: blobs, rows and listings
def test_release_list_submit(live_server, course):
    teacher = live_server.issue_token("teacher", course, "Instructor")
    alice = live_server.issue_token("alice", course, "Learner")
    body = make_tar({"p1.ipynb": b"{}", "data/x.csv": b"1,2"})
    answer = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=body,
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["notebooks"] == ["p1"]
    listing = live_server.api("GET", f"courses/{course}/assignments", alice).json()
    assert [a["assignment_id"] for a in listing["assignments"]] == ["ps1"]
    submitted = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/submissions",
        alice,
        data=body,
        headers={"Content-Type": "application/x-tar"},
    )
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["timestamp"].endswith(" UTC")
