"""Downloads of many files record what they delivered, once it has gone out: a collection
marks collected only the submissions whose archives it sent (a missing one keeps its
``collected_at`` and gets no ``collected`` event; the others get the time the manifest
announced), and a feedback download's ``feedback_fetched`` event counts the files sent."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from lti_exchange.models import Assignment, Course, Event, Feedback, Submission
from tests.support import NOTEBOOK, TAR, make_tar, release_as_teacher

pytestmark = pytest.mark.all_backends  # UPDATE … IN and a multi-row insert, on each database


def submit(live_server, course: str, student: str) -> dict:
    answer = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/submissions",
        live_server.issue_token(student, course),
        data=make_tar({"ps1.ipynb": NOTEBOOK, "x.bin": os.urandom(3000)}),
        headers=TAR,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def lose_blob(live_server, model, **where) -> None:
    with live_server.state().session_factory() as session:
        gone = session.query(model).filter_by(**where).one().blob_key
    (live_server.storage_dir / "blobs" / gone).unlink()


def test_only_delivered_submissions_are_marked_collected(live_server, course):
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ids = [submit(live_server, course, student)["id"] for student in ("ann", "ben", "cat")]
    lose_blob(live_server, Submission, id=ids[1])
    teacher = live_server.issue_token("teacher", course, "Instructor")

    answer = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/collection", teacher, json={}
    )

    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        unsent = json.load(archive.extractfile("missing.json"))
    assert [u["name"] for u in unsent] == [f"submissions/{ids[1]}.tar"]
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    collected = {s["id"]: s["collected_at"] for s in listed["submissions"]}
    announced = {m["id"]: m["collected_at"] for m in manifest}
    assert collected == {ids[0]: announced[ids[0]], ids[1]: None, ids[2]: announced[ids[2]]}
    with live_server.state().session_factory() as session:
        events = (
            session.query(Event.subject_id)
            .filter(Event.kind == "collected", Event.subject_id.in_(ids))
            .all()
        )
    assert sorted(e.subject_id for e in events) == [ids[0], ids[2]]


def test_a_feedback_download_records_the_files_it_sent(live_server, course):
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    submitted = submit(live_server, course, "ann")
    teacher = live_server.issue_token("teacher", course, "Instructor")
    feedback = make_tar(
        {
            "ann/timestamp.txt": submitted["timestamp"].encode(),
            **{f"ann/nb{n}.html": b"<p>fine</p>" for n in range(3)},
        }
    )
    path = f"courses/{course}/assignments/ps1/feedback"
    assert live_server.api("POST", path, teacher, data=feedback, headers=TAR).status_code == 201
    lose_blob(live_server, Feedback, submission_id=submitted["id"], notebook_id="nb1")

    answer = live_server.api("GET", path, live_server.issue_token("ann", course))

    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        unsent = json.load(archive.extractfile("missing.json"))
    assert [u["name"].rsplit("/", 1)[1] for u in unsent] == ["nb1.html"]
    with live_server.state().session_factory() as session:
        events = (
            session.query(Event.details)
            .filter(Event.kind == "feedback_fetched", Event.assignment_id.isnot(None))
            .join(Assignment, Assignment.id == Event.assignment_id)
            .join(Course, Course.id == Assignment.course_id)
            .filter(Course.code == course)
            .all()
        )
    assert [e.details for e in events] == [{"student_id": "ann", "files": 2}]


def test_received_ids_are_marked_with_the_delivered_and_checked(live_server, course):
    """A collect asked again after a broken-off download names what it already holds
    (``received_ids``): those of this assignment are marked with the ones sent now; another
    assignment's are left alone; a malformed list is refused before anything is sent."""
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    release_as_teacher(live_server, course, "ps2", {"ps2.ipynb": NOTEBOOK})
    ids = [submit(live_server, course, student)["id"] for student in ("ann", "ben", "cat")]
    other = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps2/submissions",
        live_server.issue_token("dan", course),
        data=make_tar({"ps2.ipynb": NOTEBOOK}),
        headers=TAR,
    ).json()["id"]
    teacher = live_server.issue_token("teacher", course, "Instructor")
    url = f"courses/{course}/assignments/ps1/collection"
    for bad in ("1,2", [0], [True], ["7"], [1] * 10_001):
        refused = live_server.api("POST", url, teacher, json={"received_ids": bad})
        assert refused.status_code == 400, bad
        assert "'received_ids' must be a list" in refused.json()["error"]["message"]

    answer = live_server.api(
        "POST",
        url,
        teacher,
        json={"submission_ids": [ids[2]], "received_ids": [ids[0], ids[2], other, 999_999]},
    )

    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        assert archive.getnames() == ["manifest.json", f"submissions/{ids[2]}.tar"]
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    marked = {s["id"]: s["collected_at"] for s in listed["submissions"] if s["collected_at"]}
    assert set(marked) == {ids[0], ids[2]} and other not in marked
    assert collected_events(live_server, (*ids, other)) == sorted([ids[0], ids[2]])

    # Asked again: one already marked keeps its time and event; a removed one and one this
    # answer could not send (its archive is gone) are not marked through received_ids.
    remove = f"courses/{course}/submissions/{ids[1]}"
    assert live_server.api("DELETE", remove, teacher).status_code in (200, 204)
    fourth = submit(live_server, course, "dan")["id"]
    lose_blob(live_server, Submission, id=fourth)
    again = live_server.api(
        "POST",
        url,
        teacher,
        json={"submission_ids": [fourth], "received_ids": [ids[0], ids[1], fourth]},
    )
    assert again.status_code == 200
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    after = {s["id"]: s["collected_at"] for s in listed["submissions"] if s["collected_at"]}
    assert after == {ids[0]: marked[ids[0]], ids[2]: marked[ids[2]]}
    assert collected_events(live_server, (*ids, other, fourth)) == sorted([ids[0], ids[2]])


def collected_events(live_server, subject_ids) -> list[int]:
    with live_server.state().session_factory() as session:
        events = session.query(Event.subject_id).filter(Event.kind == "collected").all()
    return sorted(e.subject_id for e in events if e.subject_id in subject_ids)
