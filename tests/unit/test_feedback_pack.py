"""``release_feedback``'s archive: what it declares to the exchange is what it holds."""

from __future__ import annotations

import io
import logging
import os
import tarfile

import pytest
from nbgrader.exchange.abc.exchange import ExchangeError

from nbgrader_plugin.release_feedback import ExchangeReleaseFeedback
from tests.unit.test_plugin_streams import server_accepts


def releaser(folders: dict) -> ExchangeReleaseFeedback:
    release = ExchangeReleaseFeedback.__new__(ExchangeReleaseFeedback)  # only _pack is used
    release.folders = folders
    return release


def test_the_feedback_archive_declares_its_members_and_bytes(tmp_path):
    folders = {}
    for student, pages in (("ann", 2), ("ben", 1), ("cy", 0)):
        folder = tmp_path / student / "ps1"
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-12-06 10:00:00.000001 UTC\n")
        for page in range(pages):
            (folder / f"p{page}.html").write_text("<p>well done</p>" * (page + 1))
        folders[student] = folder
    handle = io.BytesIO()

    count, members, unpacked = releaser(folders)._pack(handle)

    with tarfile.open(fileobj=io.BytesIO(handle.getvalue())) as tar:
        held = tar.getmembers()
    assert count == 3  # feedback pages; cy has none and is left out
    assert members == len(held) == 5  # and the two timestamp.txt
    assert unpacked == sum(m.size for m in held)
    data = handle.getvalue()
    assert server_accepts(data, members, unpacked)  # the exchange counts the same
    assert not server_accepts(data, members - 1, unpacked)
    assert not server_accepts(data, members, unpacked - 1)
    assert sorted(m.name for m in held) == [
        "ann/p0.html",
        "ann/p1.html",
        "ann/timestamp.txt",
        "ben/p0.html",
        "ben/timestamp.txt",
    ]


@pytest.mark.parametrize("kind", ["folder", "link", "dangling link", "fifo"])
def test_feedback_that_is_not_a_file_is_named_not_sent(tmp_path, kind):
    folder = tmp_path / "ann" / "ps1"
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text("2026-12-06 10:00:00.000001 UTC\n")
    (folder / "p1.html").write_text("<p>ok</p>")
    odd = folder / "p2.html"
    if kind == "folder":
        odd.mkdir()
    elif kind == "link":
        odd.symlink_to(folder / "p1.html")
    elif kind == "dangling link":
        odd.symlink_to(tmp_path / "gone.html")
    else:
        os.mkfifo(odd)
    release = releaser({"ann": folder})
    release.log = logging.getLogger("test")

    with pytest.raises(ExchangeError, match="p2.html is not a file"):
        release._pack(io.BytesIO())
