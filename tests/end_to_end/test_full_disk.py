"""The user's own disk fills up (JupyterHub home volumes are small): ``nbgrader fetch_assignment``
and ``nbgrader collect`` say the disk is full and what to free, not a traceback, and leave no
half-written folder; collect keeps (and records in the gradebook) the submissions it placed
before; ``nbgrader submit`` whose local copy does not fit says the submission is stored anyway.

The full disk is real: a tmpfs of a few hundred KiB mounted over the folder being written
(the tests run as root, as CI does here, or with passwordless sudo)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from tests.end_to_end.helpers import Role, instructor_course, no_traceback
from tests.support import NOTEBOOK, TAR, make_tar, release_as_teacher


def _privileged(*command: str) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    done = subprocess.run([*prefix, *command], capture_output=True, text=True)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.stderr.strip()}): these tests mount a small tmpfs "
        "to fill a disk for real, which needs root or passwordless sudo"
    )


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, int], Path]]:
    """``small_disk(folder, kib)`` mounts a tmpfs of ``kib`` KiB over ``folder`` (made empty)."""
    mounted: list[Path] = []

    def mount(folder: Path, kib: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        _privileged("mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0777", "tmpfs", str(folder))
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        _privileged("umount", "-l", str(folder))


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_fetch_onto_a_full_disk_says_what_to_free(live_server, small_disk, tmp_path: Path):
    course = f"full{uuid.uuid4().hex[:6]}"
    files = {"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(1024 * 1024)}
    release_as_teacher(live_server, course, "ps1", files)
    ann = Role("ann", tmp_path, live_server.url)
    ann.login(live_server.url, live_server.issue_token("ann", course))
    disk = small_disk(ann.work, 256)

    done = ann.nbgrader("fetch_assignment", "ps1", "--course", course, expect=1)

    no_traceback(done)
    [said] = done.lines("Fetching the assignment failed: the disk is full")
    assert "there was no room to write" in said and "No space left on device" in said
    assert "Delete files you no longer need" in said and "then try again" in said
    assert leftovers(disk) == []  # no staging folder, no half-written file


def test_a_collect_onto_a_full_disk_keeps_what_fit(live_server, small_disk, tmp_path: Path):
    course = f"fullc{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    for student in ("ann", "ben", "cat"):
        body = make_tar({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(200 * 1024)})
        path = f"courses/{course}/assignments/ps1/submissions"
        token = live_server.issue_token(student, course)
        assert live_server.api("POST", path, token, data=body, headers=TAR).status_code == 201
    teacher, root = instructor_course(live_server, tmp_path, course)
    disk = small_disk(root / "submitted", 512)  # room for two submissions, not three

    done = teacher.nbgrader("collect", "ps1", cwd=root, expect=1)

    no_traceback(done)
    [said] = done.lines("Collecting failed: the disk is full")
    assert "Delete files you no longer need" in said
    assert done.lines("Collected 2 of 3 submission(s) of 'ps1' before this failure")
    assert sorted(p.name for p in disk.iterdir()) == ["ann", "ben"]  # no staging folder
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course) as gradebook:
        assert sorted(s.id for s in gradebook.students) == ["ann", "ben"]


def test_a_submit_whose_local_copy_does_not_fit_is_still_submitted(
    live_server, small_disk, tmp_path: Path
):
    course = f"fulls{uuid.uuid4().hex[:6]}"
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK})
    ann = Role("ann", tmp_path, live_server.url)
    ann.login(live_server.url, live_server.issue_token("ann", course))
    ann.nbgrader("fetch_assignment", "ps1", "--course", course)
    (ann.work / "ps1" / "data.bin").write_bytes(os.urandom(300 * 1024))
    cache = small_disk(ann.home / ".local/share/jupyter/nbgrader_cache", 128)

    done = ann.nbgrader("submit", "ps1", "--course", course)

    no_traceback(done)
    assert done.lines("Submitted: the exchange has your submission.")
    assert done.lines("No need to submit again.")
    assert leftovers(cache) == [course]  # the course folder, without a half copy in it
    token = live_server.issue_token("teacher", course, "Instructor")
    listed = live_server.api("GET", f"courses/{course}/submissions", token).json()["submissions"]
    assert [s["student_id"] for s in listed] == ["ann"]
