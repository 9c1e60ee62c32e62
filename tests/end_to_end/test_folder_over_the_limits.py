"""A folder the exchange cannot take is refused at once, not after it has been sent.

The plugin counts what it will send (files and empty folders, and their bytes) and declares it
(``X-Archive-Members``, ``X-Archive-Unpacked-Bytes``); the service answers an upload over its
limits before reading the body. A large upload (over 16 MiB, or more than 1,000 files and
folders) first asks for the limits (``GET /api/v1/limits``) and is refused by the plugin itself,
before a byte is sent. The test service takes 500 members and 48 MiB.

(A plugin's tar is not compressed, so its unpacked size stays under its upload's: with the
default limits, an upload over ``LTI_EXCHANGE_MAX_UNPACKED_BYTES`` is over the upload limit
first, which ``Content-Length`` already answers at once.)"""

from __future__ import annotations

import uuid

from tests.end_to_end.helpers import instructor_course, no_traceback, student_with_release
from tests.support import NOTEBOOK, log_lines


def test_a_submission_with_too_many_files_is_refused_at_once(live_server, tmp_path):
    course = f"many{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    images = ann.work / "ps1" / "images"
    images.mkdir()
    for number in range(600):
        (images / f"{number:04d}.png").write_bytes(b"\x89PNG")

    done = ann.nbgrader("submit", "ps1", "--course", course, expect=1)

    no_traceback(done)
    # 600 images, the notebook, and the submission_secret.txt nbgrader's submit adds
    [said] = done.lines("The folder holds 602 files and folders; the exchange takes at most 500")
    assert "Remove generated files (caches, checkpoints, data sets, virtual environments)" in said
    assert "Nothing was stored." in said  # the service's answer: under 1,000, nobody asked first
    assert log_lines(live_server, f"/courses/{course}/assignments/ps1/submissions")
    teacher = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert listed["submissions"] == []

    for extra in images.iterdir():
        extra.unlink()
    ann.nbgrader("submit", "ps1", "--course", course)
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert len(listed["submissions"]) == 1


def test_a_release_with_too_many_files_is_refused_at_once(live_server, tmp_path):
    course = f"manyrel{uuid.uuid4().hex[:6]}"
    teacher, root = instructor_course(live_server, tmp_path, course)
    release = root / "release" / "ps1"
    (release / "data").mkdir(parents=True)
    (release / "ps1.ipynb").write_bytes(NOTEBOOK)
    for number in range(500):
        (release / "data" / f"{number:04d}.csv").write_text("x\n")

    done = teacher.nbgrader("release_assignment", "ps1", cwd=root, expect=1)

    no_traceback(done)
    assert done.lines("The folder holds 501 files and folders; the exchange takes at most 500")
    token = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/assignments", token)
    assert listed.json()["assignments"] == []


def test_a_large_submission_over_the_limits_is_refused_before_it_is_sent(live_server, tmp_path):
    course = f"pre{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    images = ann.work / "ps1" / "images"
    images.mkdir()
    for number in range(1100):
        (images / f"{number:04d}.png").write_bytes(b"\x89PNG")

    done = ann.nbgrader("submit", "ps1", "--course", course, expect=1)

    no_traceback(done)
    [said] = done.lines("The folder holds 1102 files and folders; the exchange takes at most 500")
    assert "Nothing was sent." in said and "LTI_EXCHANGE_MAX_ARCHIVE_MEMBERS" in said
    for extra in images.iterdir():
        extra.unlink()
    ann.nbgrader("submit", "ps1", "--course", course)
    teacher = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert len(listed["submissions"]) == 1
    # the refused attempt never reached the submissions route: one request, the second submit
    [sent] = log_lines(live_server, f"/courses/{course}/assignments/ps1/submissions")
    assert " 201 " in sent


def test_a_release_over_the_upload_limit_is_refused_before_it_is_sent(live_server, tmp_path):
    course = f"prerel{uuid.uuid4().hex[:6]}"
    teacher, root = instructor_course(live_server, tmp_path, course)
    release = root / "release" / "ps1"
    release.mkdir(parents=True)
    (release / "ps1.ipynb").write_bytes(NOTEBOOK)
    with (release / "data.bin").open("wb") as data:
        data.truncate(60 * 1000 * 1000)  # over the test service's 48 MiB

    done = teacher.nbgrader("release_assignment", "ps1", cwd=root, expect=1)

    no_traceback(done)
    [said] = done.lines("The folder makes an upload of 60.0 MB")
    assert "the exchange takes at most 50.3 MB (50331648 bytes) in one upload" in said
    assert "Remove large files (data sets, outputs)" in said and "Nothing was sent." in said
    token = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/assignments", token)
    assert listed.json()["assignments"] == []
    assert not log_lines(live_server, f"/courses/{course}/assignments/ps1/releases", wait=1)
