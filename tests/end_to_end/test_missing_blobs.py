"""``nbgrader collect`` and ``nbgrader fetch_feedback`` when some of the exchange's stored files
are gone or damaged (deleted by hand, a storage fault): everything else still arrives, and the
command names what did not and what to do about it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from lti_exchange.models import Feedback, Release, Submission
from tests.end_to_end.helpers import Role, instructor_course, no_traceback
from tests.support import NOTEBOOK, TAR, make_tar, release_as_teacher

STUDENTS = ("ann", "ben", "cat", "dan")


def submit_as(live_server, course: str, student: str) -> dict:
    token = live_server.issue_token(student, course)
    body = make_tar({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(50_000)})
    answer = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/submissions", token, data=body, headers=TAR
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def blob_path(live_server, model, **where) -> Path:
    with live_server.state().session_factory() as session:
        row = session.query(model).filter_by(**where).one()
        return live_server.storage_dir / "blobs" / row.blob_key


def test_collect_takes_what_is_there_and_names_the_missing_and_damaged(live_server, tmp_path):
    course = f"gone{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ids = {student: submit_as(live_server, course, student)["id"] for student in STUDENTS}
    blob_path(live_server, Submission, id=ids["ben"]).unlink()
    damaged = blob_path(live_server, Submission, id=ids["dan"])
    os.truncate(damaged, damaged.stat().st_size // 2)
    teacher, root = instructor_course(live_server, tmp_path, course)

    done = teacher.nbgrader("collect", "ps1", cwd=root)

    no_traceback(done)
    collected = sorted(p.name for p in (root / "submitted").iterdir() if not p.name.startswith("."))
    assert collected == ["ann", "cat"]
    for student in ("ann", "cat"):
        assert (root / "submitted" / student / "ps1" / "data.bin").stat().st_size == 50_000
    assert done.lines("Could not collect the submission of ben (ps1, submitted")
    assert done.lines("no longer has this file")
    assert done.lines("Could not collect the submission of dan (ps1, submitted")[0].endswith(
        "(its copy on the exchange is damaged)."
    )
    assert done.lines("Could not collect 2 submission(s) of 'ps1'")
    assert done.lines("students: ben, dan")
    assert done.lines("Collected 2 submission(s)")
    assert not list((root / "submitted").glob(".collect-*"))  # no staging folder left behind


def test_fetch_feedback_takes_what_is_there_and_names_the_missing(live_server, tmp_path):
    course = f"gonefb{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK, "ps2.ipynb": NOTEBOOK})
    submitted = submit_as(live_server, course, "ann")
    stamp = submitted["timestamp"]
    teacher = live_server.issue_token("teacher", course, "Instructor")
    feedback = make_tar(
        {
            "ann/timestamp.txt": stamp.encode(),
            "ann/ps1.html": b"<p>one</p>",
            "ann/ps2.html": b"<p>two</p>",
            "ann/ps3.html": b"<p>three</p>",
        }
    )
    answer = live_server.api(
        "POST", f"courses/{course}/assignments/ps1/feedback", teacher, data=feedback, headers=TAR
    )
    assert answer.status_code == 201, answer.text
    blob_path(live_server, Feedback, submission_id=submitted["id"], notebook_id="ps2").unlink()
    rotten = blob_path(live_server, Feedback, submission_id=submitted["id"], notebook_id="ps3")
    rotten.write_bytes(b"<p>THREE</p>")  # same size, other bytes: only its SHA-256 tells
    ann = Role("ann", tmp_path, live_server.url)
    ann.login(live_server.url, live_server.issue_token("ann", course))
    folder = ann.work / "ps1" / "feedback" / stamp
    folder.mkdir(parents=True)
    (folder / "ps3.html").write_bytes(b"<p>three</p>")  # fetched whole before the damage

    done = ann.nbgrader("fetch_feedback", "ps1", "--course", course)

    no_traceback(done)
    assert (folder / "ps1.html").read_bytes() == b"<p>one</p>"
    assert not (folder / "ps2.html").exists()
    assert (folder / "ps3.html").read_bytes() == b"<p>three</p>"  # not replaced by the damage
    assert sorted(p.name for p in folder.iterdir()) == ["ps1.html", "ps3.html"]  # no part file
    assert done.lines("Could not fetch the feedback ps2.html")
    assert done.lines("Could not fetch the feedback ps3.html")[0].count("does not match")
    assert done.lines("Tell your instructor")
    assert done.lines("Fetched feedback for 1 notebook(s) of ps1")


def test_a_damaged_release_is_refused_with_what_to_do(live_server, tmp_path):
    course = f"rot{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    with live_server.state().session_factory() as session:
        key = session.query(Release).order_by(Release.id.desc()).first().blob_key
    stored = live_server.storage_dir / "blobs" / key
    stored.write_bytes(stored.read_bytes().replace(b"nbformat", b"NBFORMAT"))  # same size
    ann = Role("ann", tmp_path, live_server.url)
    ann.login(live_server.url, live_server.issue_token("ann", course))

    done = ann.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)

    no_traceback(done)
    assert done.lines("arrived different from what was released")
    assert done.lines("tell your instructor, who can release the assignment again")
    assert list(ann.work.iterdir()) == []  # nothing half-fetched is left, no staging folder
