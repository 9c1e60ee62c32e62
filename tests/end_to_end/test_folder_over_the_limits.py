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

import pytest

from tests.end_to_end.helpers import instructor_course, no_traceback, student_with_release
from tests.support import NOTEBOOK, log_lines


@pytest.mark.parametrize(("images", "asked_first"), [(600, False), (1100, True)])
def test_a_submission_with_too_many_files_is_refused_at_once(
    live_server, tmp_path, images, asked_first
):
    """Up to 1,000 files and folders the plugin sends the folder and the service refuses it from
    its headers; over that, the plugin asks for the limits first and sends nothing."""
    course = f"many{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    folder = ann.work / "ps1" / "images"
    folder.mkdir()
    for number in range(images):
        (folder / f"{number:04d}.png").write_bytes(b"\x89PNG")

    done = ann.nbgrader("submit", "ps1", "--course", course, expect=1)

    no_traceback(done)
    # the images, the notebook, and the submission_secret.txt nbgrader's submit adds
    [said] = done.lines(
        f"The folder holds {images + 2} files and folders; the exchange takes at most 500"
    )
    assert "Remove generated files (caches, checkpoints, data sets, virtual environments)" in said
    assert "LTI_EXCHANGE_MAX_ARCHIVE_MEMBERS" in said
    assert ("Nothing was sent." if asked_first else "Nothing was stored.") in said
    teacher = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert listed["submissions"] == []

    for extra in folder.iterdir():
        extra.unlink()
    ann.nbgrader("submit", "ps1", "--course", course)
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert len(listed["submissions"]) == 1
    # what reached the submissions route: the refused upload unless it was never sent, then
    # the second submit
    reached = log_lines(
        live_server,
        f"/courses/{course}/assignments/ps1/submissions",
        at_least=1 if asked_first else 2,
    )
    assert [line.split()[3] for line in reached] == (["201"] if asked_first else ["413", "201"])


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


@pytest.mark.parametrize(
    ("command", "folder", "small_file", "large_file", "what", "advice", "route"),
    [
        (
            "release_assignment",
            "release/ps1",
            ("ps1.ipynb", NOTEBOOK),
            "data.bin",
            "The folder",
            "Remove large files (data sets, outputs) from the folder",
            "releases",
        ),
        (
            "release_feedback",
            "feedback/ann/ps1",
            ("timestamp.txt", b"2026-12-06 10:00:00.000000 UTC"),
            "ps1.html",
            "The feedback",
            "Release feedback for fewer students at a time",
            "feedback",
        ),
    ],
)
def test_an_upload_over_the_upload_limit_is_refused_before_it_is_sent(
    live_server, tmp_path, command, folder, small_file, large_file, what, advice, route
):
    course = f"prebig{uuid.uuid4().hex[:6]}"
    teacher, root = instructor_course(live_server, tmp_path, course)
    source = root / folder
    source.mkdir(parents=True)
    name, data = small_file
    (source / name).write_bytes(data)
    with (source / large_file).open("wb") as large:
        large.truncate(60 * 1000 * 1000)  # over the test service's 48 MiB

    done = teacher.nbgrader(command, "ps1", cwd=root, expect=1)

    no_traceback(done)
    [said] = done.lines(f"{what} makes an upload of 60.0 MB")
    assert "the exchange takes at most 50.3 MB (50331648 bytes) in one upload" in said
    assert advice in said and "Nothing was sent." in said
    token = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/assignments", token)
    assert listed.json()["assignments"] == []
    assert not log_lines(live_server, f"/courses/{course}/assignments/ps1/{route}", wait=1)
