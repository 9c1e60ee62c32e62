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
