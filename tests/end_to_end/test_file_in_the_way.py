"""What is on the student's disk where the exchange does not expect it.

- A file where the assignment's folder goes (``ps1`` saved as a file, a download named like the
  assignment): ``nbgrader list`` and the Assignments tab do not call it fetched, and
  ``fetch_assignment`` and ``submit`` name that file and what to do, instead of failing on a
  temporary folder's name or saying the assignment is missing.
- A file where ``collect`` puts a student's folder: the file is named, not the temporary folder
  the submission was unpacked into."""

from __future__ import annotations

import uuid

from tests.end_to_end.helpers import instructor_course, no_traceback, student_with_release
from tests.support import NOTEBOOK


def test_a_file_named_like_the_assignment_is_not_a_fetched_copy(live_server, tmp_path):
    course = f"inway{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course, fetch=False)
    in_the_way = ann.work / "ps1"
    in_the_way.write_text("notes, not a folder\n")

    listed = ann.nbgrader("list", "--course", course)
    assert listed.lines(f"{course} ps1") and not listed.lines("already downloaded")
    [row] = ann.ui_listing(course)["value"]
    assert (row["status"], [nb["notebook_id"] for nb in row["notebooks"]]) == ("released", ["ps1"])

    fetched = ann.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)
    no_traceback(fetched)
    assert fetched.lines(
        "ps1 is a file, not a folder, so the assignment cannot be fetched into it. Rename or "
        "move that file, then fetch again."
    )
    submitted = ann.nbgrader("submit", "ps1", "--course", course, expect=1)
    no_traceback(submitted)
    assert submitted.lines(f"{in_the_way} is a file, not the assignment's folder.")
    assert in_the_way.read_text() == "notes, not a folder\n"  # left as it was

    in_the_way.rename(ann.work / "ps1-notes.txt")
    ann.nbgrader("fetch_assignment", "ps1", "--course", course)
    assert (ann.work / "ps1" / "ps1.ipynb").read_bytes() == NOTEBOOK
    assert ann.nbgrader("list", "--course", course).lines("already downloaded")


def test_a_file_where_collect_puts_a_students_folder_is_named(live_server, tmp_path):
    course = f"cway{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    ann.nbgrader("submit", "ps1", "--course", course)
    teacher, root = instructor_course(live_server, tmp_path, course)
    in_the_way = root / "submitted" / "ann" / "ps1"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("not a folder\n")

    done = teacher.nbgrader("collect", "ps1", cwd=root, expect=1)

    no_traceback(done)
    assert done.lines(
        f"Collecting failed: {in_the_way} is a file where a folder is needed (Not a directory). "
        "Move or rename it, then try again."
    )
    assert sorted(p.name for p in in_the_way.parent.iterdir()) == ["ps1"]  # nothing left over
    in_the_way.unlink()
    teacher.nbgrader("collect", "ps1", cwd=root)
    assert (in_the_way / "ps1.ipynb").read_bytes() == NOTEBOOK
