"""``release_feedback``'s archive: what it declares to the exchange is what it holds."""

from __future__ import annotations

import io
import tarfile

from nbgrader_plugin.release_feedback import ExchangeReleaseFeedback


def test_the_feedback_archive_declares_its_members_and_bytes(tmp_path):
    folders = {}
    for student, pages in (("ann", 2), ("ben", 1), ("cy", 0)):
        folder = tmp_path / student / "ps1"
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-12-06 10:00:00.000001 UTC\n")
        for page in range(pages):
            (folder / f"p{page}.html").write_text("<p>well done</p>" * (page + 1))
        folders[student] = folder
    release = ExchangeReleaseFeedback.__new__(ExchangeReleaseFeedback)  # only _pack is used
    release.folders = folders
    handle = io.BytesIO()

    count, members, unpacked = release._pack(handle)

    with tarfile.open(fileobj=io.BytesIO(handle.getvalue())) as tar:
        held = tar.getmembers()
    assert count == 3  # feedback pages; cy has none and is left out
    assert members == len(held) == 5  # and the two timestamp.txt
    assert unpacked == sum(m.size for m in held)
    assert sorted(m.name for m in held) == [
        "ann/p0.html",
        "ann/p1.html",
        "ann/timestamp.txt",
        "ben/p0.html",
        "ben/timestamp.txt",
    ]
