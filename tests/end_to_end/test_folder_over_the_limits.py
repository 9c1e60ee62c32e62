"""A folder the exchange cannot take is refused at once, not after it has been sent.

The plugin counts what it will send (files and empty folders, and their bytes) and declares it
(``X-Archive-Members``, ``X-Archive-Unpacked-Bytes``); the service answers an upload over its
limits before reading the body. The test service takes 500 members.

(A plugin's tar is not compressed, so its unpacked size stays under its upload's: with the
default limits, an upload over ``LTI_EXCHANGE_MAX_UNPACKED_BYTES`` is over the upload limit
first, which ``Content-Length`` already answers at once.)"""

from __future__ import annotations

import uuid

from tests.end_to_end.helpers import instructor_course, no_traceback, student_with_release
from tests.support import NOTEBOOK


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
