"""Hostile archives: the server's upload check (lti_exchange.archives) and the plugin's extraction
(nbgrader_plugin.archive). No server."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from lti_exchange.archives import ArchiveLimits, scan_archive, store_archive
from lti_exchange.errors import InvalidArchive, InvalidRequest, PayloadTooLarge
from lti_exchange.storage import FilesystemStorage
from nbgrader_plugin.archive import UnsafeArchive, extract_stream

LIMITS = ArchiveLimits(max_upload_bytes=1024 * 1024, max_unpacked_bytes=256 * 1024, max_members=20)


def build(*members: tuple[tarfile.TarInfo, bytes | None], fmt=tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def directory(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def special(name: str, kind: bytes, **attrs) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


NOTEBOOK = file("p1.ipynb", b'{"cells": []}')

BAD_MEMBERS = {
    "absolute": (file("/etc/evil.txt"), InvalidArchive, "absolute"),
    "dotdot": (file("../escape.txt"), InvalidArchive, ".."),
    "nested-dotdot": (file("a/b/../../../escape.txt"), InvalidArchive, ".."),
    "dotdot-dir": (directory("../outside"), InvalidArchive, ".."),
    "backslash": (file("..\\escape.txt"), InvalidArchive, "forbidden"),
    "control-char": (file("bad\nname.txt"), InvalidArchive, "forbidden"),
    "symlink": (special("link", tarfile.SYMTYPE, linkname="/etc/passwd"), InvalidArchive, "link"),
    "relative-symlink": (
        special("link", tarfile.SYMTYPE, linkname="../../x"),
        InvalidArchive,
        "link",
    ),
    "hardlink": (special("hard", tarfile.LNKTYPE, linkname="p1.ipynb"), InvalidArchive, "link"),
    "chardev": (
        special("null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        InvalidArchive,
        "regular file",
    ),
    "blockdev": (
        special("sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        InvalidArchive,
        "regular file",
    ),
    "fifo": (special("pipe", tarfile.FIFOTYPE), InvalidArchive, "regular file"),
}


@pytest.fixture
def storage(tmp_path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "storage")


def assert_nothing_stored(storage: FilesystemStorage) -> None:
    assert storage.count_blobs() == 0
    assert storage.count_partial() == 0
    assert list(storage.tmp_dir.iterdir()) == []


# --- the server's check ----------------------------------------------------------------------


def test_accepts_a_normal_archive(storage):
    data = build(
        file("b.ipynb", b"B"),
        file("a.ipynb", b"A"),
        file("./c.ipynb", b"C"),
        directory("sub"),
        file("sub/nested.ipynb", b"N"),
        file("data.csv", b"1,2\n"),
        file("notes.ipynb.txt", b"not a notebook"),
        directory("d.ipynb"),
    )
    blob, manifest = store_archive(io.BytesIO(data), storage, "submissions", LIMITS)
    assert manifest.notebooks == ["a", "b", "c"]
    assert blob.size == len(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.key.startswith("submissions/")
    with storage.open(blob.key) as handle:
        assert handle.read() == data
    assert storage.count_blobs() == 1
    assert storage.count_partial() == 0
    names = [m.name for m in manifest.members]
    assert "c.ipynb" in names and "sub/nested.ipynb" in names
    file_bytes = [b"B", b"A", b"C", b"N", b"1,2\n", b"not a notebook"]
    assert manifest.unpacked_size == sum(len(x) for x in file_bytes)


def test_accepts_a_gzip_archive(storage):
    data = gzip.compress(build(NOTEBOOK, file("z.ipynb", b"{}")))
    blob, manifest = store_archive(io.BytesIO(data), storage, "releases", LIMITS)
    assert manifest.notebooks == ["p1", "z"]
    assert blob.sha256 == hashlib.sha256(data).hexdigest()


def test_scan_reports_every_file_to_on_file():
    seen = {}

    def on_file(name, handle, size):
        seen[name] = (handle.read(), size)

    data = build(NOTEBOOK, directory("sub"), file("sub/x.txt", b"hello"))
    manifest = scan_archive(io.BytesIO(data), LIMITS, on_file=on_file)
    assert seen == {"p1.ipynb": (b'{"cells": []}', 13), "sub/x.txt": (b"hello", 5)}
    assert manifest.notebooks == ["p1"]


@pytest.mark.parametrize("case", BAD_MEMBERS.keys())
@pytest.mark.parametrize("position", ["first", "after-a-good-file"])
def test_refuses_each_bad_member_and_stores_nothing(storage, case, position):
    bad, error, words = BAD_MEMBERS[case]
    members = [bad] if position == "first" else [NOTEBOOK, file("ok.txt", b"fine"), bad]
    with pytest.raises(error) as refused:
        store_archive(io.BytesIO(build(*members)), storage, "submissions", LIMITS)
    assert refused.value.status == 400
    assert words in refused.value.message
    assert_nothing_stored(storage)


@pytest.mark.parametrize("case", BAD_MEMBERS.keys())
def test_scan_alone_refuses_each_bad_member(case):
    bad, error, _words = BAD_MEMBERS[case]
    with pytest.raises(error):
        scan_archive(io.BytesIO(build(NOTEBOOK, bad)), LIMITS)


def test_refuses_too_many_members(storage):
    ok = build(*[file(f"f{i}.txt") for i in range(LIMITS.max_members)])
    store_archive(io.BytesIO(ok), storage, "submissions", LIMITS)
    assert storage.count_blobs() == 1
    too_many = build(*[file(f"f{i}.txt") for i in range(LIMITS.max_members + 1)])
    with pytest.raises(PayloadTooLarge) as refused:
        store_archive(io.BytesIO(too_many), storage, "submissions", LIMITS)
    assert refused.value.status == 413
    assert refused.value.code == "archive_too_many_members"
    assert storage.count_blobs() == 1
    assert storage.count_partial() == 0


def test_refuses_too_much_unpacked_data(storage):
    size = LIMITS.max_unpacked_bytes + 1
    data = gzip.compress(build(NOTEBOOK, file("zeros.bin", bytes(size))))
    assert len(data) < LIMITS.max_upload_bytes
    with pytest.raises(PayloadTooLarge) as refused:
        store_archive(io.BytesIO(data), storage, "submissions", LIMITS)
    assert refused.value.code == "archive_too_large"
    assert_nothing_stored(storage)


def test_refuses_too_many_bytes_on_the_wire(storage):
    limits = ArchiveLimits(max_upload_bytes=8192, max_unpacked_bytes=10**9, max_members=100)
    data = build(NOTEBOOK, file("big.bin", b"\x01" * 9000))
    with pytest.raises(PayloadTooLarge) as refused:
        store_archive(io.BytesIO(data), storage, "submissions", limits)
    assert refused.value.code == "payload_too_large"
    assert_nothing_stored(storage)


@pytest.mark.parametrize(
    "data",
    [
        b"not a tar archive at all\n" * 40,
        gzip.compress(b"gzip, but not of a tar" * 40),
        build(NOTEBOOK)[:700],
        b"\x1f\x8b\x08\x00garbage-after-gzip-magic" * 10,
    ],
    ids=["text", "gzip-of-text", "truncated", "broken-gzip"],
)
def test_refuses_what_is_not_a_tar(storage, data):
    with pytest.raises(InvalidArchive) as refused:
        store_archive(io.BytesIO(data), storage, "submissions", LIMITS)
    assert "tar" in refused.value.message
    assert_nothing_stored(storage)


def test_refuses_an_empty_body(storage):
    with pytest.raises((InvalidArchive, InvalidRequest)) as refused:
        store_archive(io.BytesIO(b""), storage, "submissions", LIMITS)
    assert refused.value.status == 400
    assert "empty" in refused.value.message
    assert_nothing_stored(storage)


def test_an_error_in_the_stream_itself_stores_nothing(storage):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.data = io.BytesIO(build(NOTEBOOK, file("big.bin", b"y" * 50_000)))

        def readable(self):
            return True

        def read(self, size=-1):
            if self.data.tell() > 20_000:
                raise ConnectionResetError("client went away")
            return self.data.read(size)

    with pytest.raises(ConnectionResetError):
        store_archive(Broken(), storage, "submissions", LIMITS)
    assert_nothing_stored(storage)


# --- the plugin's extraction -----------------------------------------------------------------


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, Path]:
    """``(outer, dest)``: extract into ``dest``; nothing else in ``outer`` may change."""
    outer = tmp_path / "outer"
    dest = outer / "deep" / "dest"
    outer.mkdir()
    (outer / "keep.txt").write_text("untouched")
    return outer, dest


def test_extract_stream_unpacks_a_safe_archive(workspace):
    outer, dest = workspace
    data = build(NOTEBOOK, directory("sub"), file("sub/x.txt", b"hello"), file("./y.txt", b"y"))
    written = extract_stream(io.BytesIO(data), dest)
    assert sorted(str(p) for p in written) == ["p1.ipynb", "sub/x.txt", "y.txt"]
    assert (dest / "sub" / "x.txt").read_bytes() == b"hello"
    assert tree(outer) - {"deep", "deep/dest"} == {
        "keep.txt",
        "deep/dest/p1.ipynb",
        "deep/dest/sub",
        "deep/dest/sub/x.txt",
        "deep/dest/y.txt",
    }


@pytest.mark.parametrize(
    "member",
    [
        file("../escape.txt"),
        file("../../escape.txt"),
        file("sub/../../escape.txt"),
        directory("../escape-dir"),
        file("/ABSOLUTE"),
        special("link", tarfile.SYMTYPE, linkname=".."),
        special("link", tarfile.SYMTYPE, linkname="/etc"),
        special("hard", tarfile.LNKTYPE, linkname="/etc/passwd"),
        special("null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        special("pipe", tarfile.FIFOTYPE),
    ],
    ids=[
        "dotdot",
        "dotdot-2",
        "nested-dotdot",
        "dotdot-dir",
        "absolute",
        "symlink-up",
        "symlink-absolute",
        "hardlink",
        "chardev",
        "fifo",
    ],
)
def test_extract_stream_refuses_unsafe_members(workspace, member):
    outer, dest = workspace
    info, data = member
    if info.name == "/ABSOLUTE":
        info.name = str(outer / "absolute.txt")  # would land next to dest if obeyed
    # The unsafe member, then a file that would go through a symlink if one had been made.
    follow = file("link/escaped.txt", b"through the link")
    archive = build(NOTEBOOK, (info, data), follow)
    before = tree(outer)
    with pytest.raises(UnsafeArchive):
        extract_stream(io.BytesIO(archive), dest)
    after = tree(outer)
    outside = {p for p in after - before if not p.startswith("deep/dest/") and p != "deep/dest"}
    assert outside <= {"deep"}, outside
    assert (outer / "keep.txt").read_text() == "untouched"
    assert not (outer / "absolute.txt").exists()
    assert not (outer / "deep" / "escape.txt").exists()
    assert not (outer / "escape.txt").exists()
    assert not any(p.is_symlink() for p in outer.rglob("*"))
    assert not (dest / "link").exists()
