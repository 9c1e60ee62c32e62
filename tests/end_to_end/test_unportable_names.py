"""``nbgrader submit`` of a folder holding names the exchange would refuse (reserved or
forbidden on Windows, not UTF-8, two files that are one on macOS): every such name is listed at
once, before anything is sent, instead of one refusal per upload after the upload."""

from __future__ import annotations

import uuid

from tests.end_to_end.helpers import instructor_course, no_traceback, student_with_release
from tests.support import NOTEBOOK


def test_a_submission_with_names_the_exchange_refuses_lists_them_all_first(live_server, tmp_path):
    course = f"names{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    folder = ann.work / "ps1"
    (folder / "aux.py").write_text("x = 1\n")
    (folder / "data:1.csv").write_text("1\n")
    (folder / "Plot.png").write_bytes(b"png")
    (folder / "plot.png").write_bytes(b"png")
    with open(bytes(folder) + b"/r\xe9sum\xe9.txt", "wb") as latin1:  # a name from an old zip
        latin1.write(b"x")

    done = ann.nbgrader("submit", "ps1", "--course", course, expect=1)

    no_traceback(done)
    [said] = done.lines("Submitting the assignment failed: 4 file or folder name(s) in")
    assert "the same way on Windows, macOS and Linux" in said
    assert done.lines("  - aux.py: 'aux' is a reserved name on Windows")
    assert done.lines("  - data:1.csv: ':' is not allowed in names on Windows")
    assert done.lines("  - plot.png: the same name as Plot.png on Windows and macOS")
    assert done.lines("  - r\\xe9sum\\xe9.txt: its name is not valid UTF-8")
    assert done.lines("Rename them, or move them out of the folder, then submit again.")
    teacher = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", teacher).json()
    assert listed["submissions"] == []  # nothing was sent

    for name in ("aux.py", "data:1.csv", "plot.png"):
        (folder / name).unlink()
    (folder / "r\udce9sum\udce9.txt").unlink()
    ann.nbgrader("submit", "ps1", "--course", course)  # renamed: it goes through


def test_a_release_with_such_names_is_refused_before_sending(live_server, tmp_path):
    course = f"namesr{uuid.uuid4().hex[:6]}"
    teacher, root = instructor_course(live_server, tmp_path, course)
    (root / "release" / "ps1").mkdir(parents=True)
    (root / "release" / "ps1" / "ps1.ipynb").write_bytes(NOTEBOOK)
    (root / "release" / "ps1" / "con.txt").write_text("data\n")

    done = teacher.nbgrader("release_assignment", "ps1", cwd=root, expect=1)

    no_traceback(done)
    assert done.lines("Releasing the assignment failed: 1 file or folder name(s) in")
    assert done.lines("  - con.txt: 'con' is a reserved name on Windows")
    assert done.lines("then release again. Nothing was sent.")
    token = live_server.issue_token("ann", course)
    listed = live_server.api("GET", f"courses/{course}/assignments", token).json()
    assert listed["assignments"] == []
