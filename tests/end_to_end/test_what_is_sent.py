"""What of a folder is sent, beyond its files.

- Empty folders go along, as with nbgrader's default exchange: a release's empty ``output/``
  (where the notebook writes) arrives with ``fetch_assignment``, and a student's empty folder
  arrives with ``collect``.
- Symbolic links (a data set linked in) are not sent, and ``submit`` says which, instead of
  leaving them out in silence.
- A file dated before 1970 (some unzip tools give such dates) is sent dated 1970: the service
  refuses impossible dates, and refused the whole submission after its upload."""

from __future__ import annotations

import io
import os
import tarfile
import uuid

from tests.end_to_end.helpers import Role, instructor_course, student_with_release
from tests.support import NOTEBOOK


def test_empty_folders_are_released_fetched_submitted_and_collected(live_server, tmp_path):
    course = f"empty{uuid.uuid4().hex[:6]}"
    teacher, root = instructor_course(live_server, tmp_path, course)
    release = root / "release" / "ps1"
    (release / "output").mkdir(parents=True)
    (release / "data" / "raw").mkdir(parents=True)
    (release / "ps1.ipynb").write_bytes(NOTEBOOK)
    teacher.nbgrader("release_assignment", "ps1", cwd=root)
    ann = Role("ann", tmp_path, live_server.url)
    ann.login(live_server.url, live_server.issue_token("ann", course))

    ann.nbgrader("fetch_assignment", "ps1", "--course", course)

    fetched = ann.work / "ps1"
    assert (fetched / "output").is_dir() and (fetched / "data" / "raw").is_dir()
    assert not any((fetched / "output").iterdir())
    (fetched / "figures").mkdir()
    ann.nbgrader("submit", "ps1", "--course", course)
    teacher.nbgrader("collect", "ps1", cwd=root)
    collected = root / "submitted" / "ann" / "ps1"
    assert sorted(str(p.relative_to(collected)) for p in collected.rglob("*") if p.is_dir()) == [
        "data",
        "data/raw",
        "figures",
        "output",
    ]
    assert (collected / "ps1.ipynb").read_bytes() == NOTEBOOK


def test_links_in_a_submitted_folder_are_named_as_not_sent(live_server, tmp_path):
    course = f"links{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    shared = tmp_path / "shared"
    (shared / "images").mkdir(parents=True)
    (shared / "data.csv").write_text("x\n1\n")
    folder = ann.work / "ps1"
    (folder / "data.csv").symlink_to(shared / "data.csv")
    (folder / "images").symlink_to(shared / "images")
    (folder / "answers.txt").write_text("42\n")

    done = ann.nbgrader("submit", "ps1", "--course", course)

    [said] = done.lines("symbolic link(s) in")
    assert "2 symbolic link(s) in" in said and "are not sent" in said
    assert "data.csv, images. If one of them belongs in it, replace the link with a copy" in said
    assert said.endswith("then submit again.")
    teacher = live_server.issue_token("teacher", course, "Instructor")
    [submission] = live_server.api("GET", f"courses/{course}/submissions", teacher).json()[
        "submissions"
    ]
    archive = live_server.api(
        "GET", f"courses/{course}/submissions/{submission['id']}/archive", teacher
    )
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        sent = sorted(tar.getnames())
    assert sent == ["answers.txt", "ps1.ipynb", "submission_secret.txt"]


def test_a_file_dated_before_1970_is_submitted_dated_1970(live_server, tmp_path):
    course = f"dates{uuid.uuid4().hex[:6]}"
    ann = student_with_release(live_server, tmp_path, course)
    unzipped = ann.work / "ps1" / "from-a-zip.csv"
    unzipped.write_text("x\n1\n")
    os.utime(unzipped, (-86400, -86400))  # 1969-12-31

    ann.nbgrader("submit", "ps1", "--course", course)

    teacher, root = instructor_course(live_server, tmp_path, course)
    teacher.nbgrader("collect", "ps1", cwd=root)
    collected = root / "submitted" / "ann" / "ps1" / "from-a-zip.csv"
    assert collected.read_text() == "x\n1\n"
    assert collected.stat().st_mtime == 0
