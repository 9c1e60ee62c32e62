"""The plugin's words for a failure of the user's own file system (``local_errors.describe``)."""

from __future__ import annotations

import errno
import os

import pytest

from nbgrader_plugin.local_errors import describe

FILE = "/home/jovyan/ps1/data.bin"


@pytest.mark.parametrize(
    ("number", "says"),
    [
        (errno.ENOSPC, "the disk is full: there was no room to write /home/jovyan/ps1/data.bin"),
        (errno.EDQUOT, "your disk quota is used up: there was no room to write /home/jovyan"),
        (errno.EACCES, "permission was refused for /home/jovyan/ps1/data.bin (Permission denied)"),
        (errno.EPERM, "permission was refused for /home/jovyan/ps1/data.bin"),
        (errno.EROFS, "/home/jovyan/ps1/data.bin is on a read-only file system"),
        (errno.EIO, "/home/jovyan/ps1/data.bin could not be used (Input/output error)"),
    ],
)
def test_each_failure_names_the_file_and_what_to_do(number: int, says: str):
    described = describe(OSError(number, os.strerror(number), FILE))
    assert described.startswith(says)
    assert described.endswith("then try again.")
    if number in (errno.ENOSPC, errno.EDQUOT):
        assert "Delete files you no longer need" in described


def test_a_failure_without_a_file_still_reads_well():
    assert describe(OSError(errno.EACCES, "Permission denied")).startswith(
        "permission was refused for a local file (Permission denied)."
    )
    assert describe(OSError(errno.EIO, "Input/output error")).startswith(
        "a local file could not be used (Input/output error)."
    )


def test_a_full_disk_names_the_students_cache_only_when_given():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), FILE)
    assert "nbgrader keeps in /home/jovyan/.cache/nb" in describe(full, "/home/jovyan/.cache/nb")
    assert "nbgrader keeps" not in describe(full)  # an instructor's collect: no such copies
    assert describe(full).endswith(
        "Delete files you no longer need, or ask your administrator for more space, then try again."
    )


def test_a_file_where_a_folder_is_needed_is_named(tmp_path):
    """mkdir over a file, a path through a file, a rename onto a file: the file is named, not
    the plugin's own temporary folder that was being moved."""
    student = tmp_path / "submitted" / "ann"
    student.parent.mkdir()
    student.write_text("x")
    made = OSError(errno.EEXIST, os.strerror(errno.EEXIST), str(student))
    through = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(student / "ps1" / "a"))
    staging = tmp_path / ".collect-abc123"
    staging.mkdir()
    onto = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(staging), None, str(student))
    assert (
        describe(made) == f"{student} is a file (File exists). Move or rename it, then try again."
    )
    for exc in (through, onto):
        said = describe(exc)
        assert said.startswith(f"{student} is a file where a folder is needed (Not a directory)")
        assert said.endswith("Move or rename it, then try again.")
        assert ".collect-" not in said


def test_a_symbolic_link_in_the_way_is_called_one(tmp_path):
    """A dangling link, or a link to a folder that a rename would replace, not go through."""
    staging = tmp_path / ".fetch-abc123"
    staging.mkdir()
    dangling = tmp_path / "ps1"
    dangling.symlink_to(tmp_path / "gone")
    (tmp_path / "elsewhere").mkdir()
    to_folder = tmp_path / "ps2"
    to_folder.symlink_to(tmp_path / "elsewhere")
    for link in (dangling, to_folder):
        onto = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(staging), None, str(link))
        assert describe(onto) == (
            f"{link} is a symbolic link where a folder is needed (Not a directory). Move or "
            "rename it, then try again."
        )


def test_a_folder_that_exists_is_not_called_a_file(tmp_path):
    exc = OSError(errno.EEXIST, os.strerror(errno.EEXIST), str(tmp_path))
    assert describe(exc) == f"{tmp_path} could not be used (File exists). Check it, then try again."
