"""Hostile archives: the server's upload check (lti_exchange.archives) and the plugin's extraction
(nbgrader_plugin.archive). No server."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
from pathlib import Path

import pytest

from lti_exchange.archives.reader import MAX_PATH_BYTES, MAX_PAX_DIGITS, MAX_PAX_HEADER
from lti_exchange.archives.upload import (
    MAX_MEMBERS_CEILING,
    MAX_UNPACKED_CEILING,
    ArchiveLimits,
    scan_archive,
    store_archive,
)
from lti_exchange.config import Settings, SettingsError, load_settings
from lti_exchange.errors import InvalidArchive, InvalidRequest, PayloadTooLarge
from lti_exchange.storage import FilesystemStorage
from nbgrader_plugin import archive as plugin_archive
from nbgrader_plugin.archive import TarStream, UnsafeArchive, extract_stream, iter_safe_members
from tests.support import MiB, make_tar
from tests.tar_headers import MTIME, entry, header, long_name, pad, pax, record, tar

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


# --- the bounded reader (lti_exchange.archives.reader), archives built by hand ---------------


def accepted(data: bytes, tmp_path: Path, limits: ArchiveLimits = LIMITS):
    """Scan ``data``; the plugin must then unpack it into a fresh folder with the same files."""
    contents = {}
    manifest = scan_archive(
        io.BytesIO(data), limits, on_file=lambda n, fh, size: contents.update({n: fh.read()})
    )
    dest = tmp_path / f"unpacked-{len(list(tmp_path.iterdir()))}"
    written = extract_stream(io.BytesIO(data), dest)
    assert sorted(str(p) for p in written) == sorted(contents)
    for name, body in contents.items():
        assert (dest / name).read_bytes() == body
    return manifest, contents


def refused(data: bytes, *words: str, error=InvalidArchive, limits: ArchiveLimits = LIMITS):
    with pytest.raises(error) as caught:
        scan_archive(io.BytesIO(data), limits)
    for word in words:
        assert word.lower() in caught.value.message.lower(), (word, caught.value.message)
    return caught.value


def test_hand_built_archive_is_accepted_and_unpacked_by_the_plugin(tmp_path):
    data = tar(
        entry(b"p1.ipynb", b'{"cells": []}'),
        entry(b"sub/", kind=b"5"),
        entry(b"sub/a.txt", b"A" * 700),
        entry(b"b.txt", b"B", kind=b"\0"),
        entry(b"c.txt", b"C", kind=b"7"),
    )
    manifest, contents = accepted(data, tmp_path)
    assert contents == {
        "p1.ipynb": b'{"cells": []}',
        "sub/a.txt": b"A" * 700,
        "b.txt": b"B",
        "c.txt": b"C",
    }
    assert [m.is_dir for m in manifest.members] == [False, True, False, False, False]


def test_checksum_is_verified():
    refused(tar(entry(b"p1.ipynb", b"x", checksum_delta=1)), "checksum")
    refused(
        tar(entry(b"ok.txt", b"x"), entry(b"p1.ipynb", b"x", checksum_delta=-7)),
        "checksum",
        "ok.txt",
    )


def test_base256_size_is_read(tmp_path):
    data = b"base-256 sized"
    field = b"\x80" + len(data).to_bytes(11, "big")
    manifest, contents = accepted(tar(header(b"big.bin", size_field=field) + pad(data)), tmp_path)
    assert contents == {"big.bin": data}
    negative = b"\xff" * 12
    refused(tar(header(b"neg.bin", size_field=negative)), "negative")


def test_size_that_is_not_a_number_is_refused():
    refused(tar(header(b"x.bin", size_field=b"12_3\0       ")), "size")


def test_pax_header_over_16_KiB_is_refused_before_it_is_read():
    # Claims 256 MiB but the upload is tiny: the refusal must come from the bound, not the end.
    claim = header(b"././@PaxHeader", size=256 * MiB, kind=b"x")
    error = refused(claim + bytes(4096), "PAX header", str(MAX_PAX_HEADER))
    assert "truncated" not in error.message


def exactly(size: int, key: bytes = b"SCHILY.xattr.user.note", fill: bytes = b"c") -> bytes:
    """One PAX record of exactly ``size`` bytes."""
    first = record(key, fill * (size - len(key) - 10))
    return record(key, fill * (size - len(key) - 10 - (len(first) - size)))


def test_pax_header_of_exactly_16_KiB_is_read(tmp_path):
    records = [exactly(4096, b"SCHILY.xattr.user.n%d" % n) for n in range(4)]
    assert len(b"".join(records)) == MAX_PAX_HEADER
    _, contents = accepted(tar(pax(*records), entry(b"p1.ipynb", b"{}")), tmp_path)
    assert contents == {"p1.ipynb": b"{}"}


def test_pax_length_with_80000_digits_is_refused():
    huge = b"9" * 80_000 + b" path=x\n"
    refused(tar(header(b"././@PaxHeader", size=len(huge), kind=b"x") + pad(huge)), "PAX header")
    within = b"9" * 16_000 + b" path=x\n"
    refused(tar(header(b"././@PaxHeader", size=len(within), kind=b"x") + pad(within)), "digits")


@pytest.mark.parametrize(
    "body",
    [
        b"4 =\n",  # no key
        b"12 path=abc",  # no newline
        b"100 path=abc\n",  # longer than the header
        b"x path=abc\n",  # not a number
        b"11 pathabc\n",  # no '='
        record(b"path", b"a") + record(b"path", b"b"),  # set twice
    ],
)
def test_malformed_pax_records_are_refused(body):
    refused(tar(header(b"././@PaxHeader", size=len(body), kind=b"x") + pad(body), entry(b"a", b"")))


def test_pax_path_size_and_mtime_apply(tmp_path):
    name = "folder/" + "é" * 100 + ".txt"
    data = tar(
        pax(record(b"path", name.encode()), record(b"mtime", b"1700000000.5")),
        entry(b"short-name", b"hello"),
    )
    _, contents = accepted(data, tmp_path)
    assert contents == {name: b"hello"}


def test_pax_path_over_4_KiB_is_refused():
    name = b"/".join([b"d" * 200] * 21)
    assert len(name) > 4096
    refused(tar(pax(record(b"path", name)), entry(b"x", b"")), "4096")


def test_component_over_255_bytes_is_refused(tmp_path):
    refused(tar(pax(record(b"path", b"d/" + b"n" * 256)), entry(b"x", b"")), "255")
    _, contents = accepted(
        tar(pax(record(b"path", b"d/" + b"n" * 255)), entry(b"x", b"y")), tmp_path
    )
    assert contents == {"d/" + "n" * 255: b"y"}


def test_gnu_long_name_is_bounded_before_it_is_read(tmp_path):
    claim = header(b"././@LongLink", size=64 * MiB, kind=b"L")
    error = refused(claim + bytes(4096), "long file name", "4097")
    assert "truncated" not in error.message
    name = b"deep/" * 50 + b"file.txt"
    _, contents = accepted(tar(long_name(name), entry(b"cut", b"z")), tmp_path)
    assert contents == {name.decode(): b"z"}


@pytest.mark.parametrize(
    "parts, words",
    [
        ((pax(record(b"path", b"a")), pax(record(b"path", b"b"))), ["repeats"]),
        ((long_name(b"a"), long_name(b"b")), ["repeats"]),
        ((long_name(b"a"), pax(record(b"path", b"b"))), ["repeats"]),
        ((pax(record(b"path", b"a")), long_name(b"b")), ["repeats"]),
    ],
    ids=["pax-pax", "long-long", "long-pax", "pax-long"],
)
def test_combined_name_extensions_are_refused(parts, words):
    refused(tar(*parts, entry(b"x", b"")), *words)


def test_extension_without_a_member_is_refused():
    refused(tar(pax(record(b"path", b"a"))), "no member")


def test_global_pax_header_only_with_a_comment(tmp_path):
    comment = pax(record(b"comment", b"git archive commit"), kind=b"g")
    _, contents = accepted(tar(comment, entry(b"p1.ipynb", b"{}")), tmp_path)
    assert contents == {"p1.ipynb": b"{}"}
    renames = pax(record(b"path", b"same.txt"), kind=b"g")
    refused(tar(renames, entry(b"a", b""), entry(b"b", b"")), "global")


@pytest.mark.parametrize(
    "parts, words",
    [
        ((pax(record(b"GNU.sparse.name", b"x")), entry(b"s", b"")), ["sparse"]),
        ((entry(b"s", b"", kind=b"S"),), ["sparse file"]),
        ((entry(b"././@LongLink", b"target\0", kind=b"K"), entry(b"l", kind=b"2")), ["link"]),
        ((entry(b"vol", kind=b"V"),), ["not a regular file"]),
        ((entry(b"dump", kind=b"D"),), ["not a regular file"]),
        ((entry(b"link", kind=b"2"),), ["link"]),
        ((entry(b"hard", kind=b"1"),), ["link"]),
        ((entry(b"dev", kind=b"3"),), ["character device"]),
        ((entry(b"blk", kind=b"4"),), ["block device"]),
        ((entry(b"fifo", kind=b"6"),), ["fifo"]),
        ((pax(record(b"hdrcharset", b"BINARY")), entry(b"x", b"")), ["UTF-8"]),
        ((pax(record(b"size", b"+5")), entry(b"x", b"")), ["size"]),
        ((pax(record(b"mtime", b"1e9")), entry(b"x", b"")), ["modification time"]),
    ],
    ids=[
        "pax-sparse",
        "gnu-sparse",
        "long-link",
        "volume",
        "dumpdir",
        "symlink",
        "hardlink",
        "chardev",
        "blockdev",
        "fifo",
        "binary-charset",
        "pax-size",
        "pax-mtime",
    ],
)
def test_entries_other_than_files_and_folders_are_refused(parts, words):
    refused(tar(entry(b"p1.ipynb", b"{}"), *parts), *words)


def test_folder_with_data_is_refused():
    """tarfile would not skip a folder's data; reading it differently would be a hiding place."""
    hidden = entry(b"hidden.txt", b"secret")
    refused(tar(header(b"dir/", size=len(hidden), kind=b"5") + hidden), "dir", "data")


def test_old_style_folder_entry_is_a_folder(tmp_path):
    manifest, _ = accepted(tar(entry(b"dir/", kind=b"\0"), entry(b"dir/x", b"1")), tmp_path)
    assert [(m.name, m.is_dir) for m in manifest.members] == [("dir", True), ("dir/x", False)]


def test_ustar_prefix_is_joined_and_foreign_prefixes_refused(tmp_path):
    _, contents = accepted(tar(entry(b"file.txt", b"p", prefix=b"some/folder")), tmp_path)
    assert contents == {"some/folder/file.txt": b"p"}
    gnu = entry(b"file.txt", b"p", prefix=b"junk", magic=b"ustar  \x00")
    refused(tar(gnu), "unknown format")
    refused(tar(entry(b"file.txt", b"p", magic=b"garbage\x00")), "unknown format")


def test_archive_cut_at_a_member_boundary_is_truncated():
    whole = make_tar({"a.txt": b"a", "b.txt": b"b" * 600})
    cut = whole[: 512 + 512 + 512 + 1024]  # a.txt and b.txt complete, no end block
    assert cut.rstrip(b"\0") == whole.rstrip(b"\0")
    refused(cut, "truncated", "end-of-archive")
    refused(whole[:1200], "truncated")
    refused(whole[:700], "truncated")
    refused(entry(b"a.txt", b"a"), "truncated")  # no end block at all


def test_one_end_block_is_enough_and_trailing_zeros_are_fine(tmp_path):
    accepted(entry(b"a.txt", b"a") + bytes(512), tmp_path)
    accepted(tar(entry(b"a.txt", b"a")) + bytes(20 * 512), tmp_path)


def test_trailing_garbage_after_the_end_block_is_refused():
    refused(tar(entry(b"a.txt", b"a")) + b"hidden", "after the end")
    refused(tar(entry(b"a.txt", b"a")) + bytes(5000) + b"\x01", "after the end")
    refused(tar(entry(b"a.txt", b"a")) + tar(entry(b"b.txt", b"b")), "after the end")


def test_gzip_without_its_trailer_is_truncated():
    packed = gzip.compress(tar(entry(b"a.txt", b"a")))
    refused(packed[:-8], "truncated")
    refused(packed[:-1], "truncated")
    refused(packed[: len(packed) // 2], "truncated")


def test_gzip_with_a_bad_crc_is_refused():
    packed = bytearray(gzip.compress(tar(entry(b"a.txt", b"a"))))
    packed[-8] ^= 0xFF
    refused(bytes(packed), "corrupt")
    packed = bytearray(gzip.compress(tar(entry(b"a.txt", b"a"))))
    packed[-1] ^= 0x01  # the length
    refused(bytes(packed), "corrupt")


def test_concatenated_gzip_members_and_zero_padding_are_read(tmp_path):
    whole = tar(entry(b"a.txt", b"a" * 3000), entry(b"b.txt", b"b"))
    data = (
        gzip.compress(whole[:1000]) + gzip.compress(whole[1000:2000]) + gzip.compress(whole[2000:])
    )
    _, contents = accepted(data, tmp_path)
    assert contents == {"a.txt": b"a" * 3000, "b.txt": b"b"}
    accepted(gzip.compress(whole) + bytes(10_000), tmp_path)
    refused(gzip.compress(whole) + b"junk", "after the end")


def test_gzip_output_is_bounded_per_step_and_in_total():
    """A gzip bomb whose tar is valid but followed by a flood of zeros: refused at the cap, and
    no decompression step ever returns more than CHUNK bytes."""
    from lti_exchange.archives import reader as tar_reader

    flood = io.BytesIO()
    with gzip.GzipFile(fileobj=flood, mode="wb", compresslevel=9) as packed:
        packed.write(tar(entry(b"a.txt", b"a")))
        for _ in range(24):
            packed.write(bytes(MiB))
    data = flood.getvalue()
    assert len(data) < 100_000
    sizes = []
    source = tar_reader.GzipSource(data[:10], io.BytesIO(data[10:]).read, limit=20 * MiB)
    with pytest.raises(PayloadTooLarge) as caught:
        while chunk := source():
            sizes.append(len(chunk))
    assert caught.value.code == "archive_too_large"
    assert max(sizes) <= tar_reader.CHUNK
    assert sum(sizes) <= 20 * MiB
    limits = ArchiveLimits(max_upload_bytes=MiB, max_unpacked_bytes=MiB, max_members=2)
    assert refused(data, error=PayloadTooLarge, limits=limits).code == "archive_too_large"


def test_gzip_member_too_large_is_refused_from_its_header():
    big = gzip.compress(header(b"zeros.bin", size=LIMITS.max_unpacked_bytes + 1))
    assert refused(big, error=PayloadTooLarge).code == "archive_too_large"


def test_on_file_may_read_part_of_a_file():
    seen = {}
    data = tar(entry(b"a.txt", b"A" * 3000), entry(b"b.txt", b"B" * 10))
    scan_archive(io.BytesIO(data), LIMITS, on_file=lambda n, fh, s: seen.update({n: fh.read(7)}))
    assert seen == {"a.txt": b"A" * 7, "b.txt": b"B" * 7}


# --- names that must unpack the same everywhere ----------------------------------------------


@pytest.mark.parametrize(
    "first, second",
    [
        (entry(b"data", b"1"), entry(b"data/x.csv", b"2")),
        (entry(b"data/x.csv", b"2"), entry(b"data", b"1")),
        (entry(b"data/x.csv", b"2"), entry(b"data/x.csv/deeper", b"1")),
        (entry(b"data", b"1"), entry(b"data/", kind=b"5")),
        (entry(b"data/", kind=b"5"), entry(b"data", b"1")),
        (entry(b"a.txt", b"1"), entry(b"a.txt", b"2")),
        (entry(b"a.txt", b"1"), entry(b"./a.txt", b"2")),
        (entry(b"a.txt", b"1"), entry(b"A.TXT", b"2")),
        (entry("caf\u00e9.txt".encode(), b"1"), entry("cafe\u0301.txt".encode(), b"2")),
        (entry(b"Data/x", b"1"), entry(b"data/X", b"2")),
        (entry(b"DATA", b"1"), entry(b"data/x", b"2")),
    ],
    ids=[
        "file-then-inside",
        "inside-then-file",
        "file-as-folder-deeper",
        "file-then-folder",
        "folder-then-file",
        "duplicate",
        "duplicate-dot-slash",
        "case",
        "nfc-nfd",
        "case-in-folder",
        "case-folder-clash",
    ],
)
def test_duplicates_and_clashes_are_refused_naming_the_member(first, second):
    error = refused(tar(entry(b"p1.ipynb", b"{}"), first, second), "rename")
    assert "submit again" in error.message


def test_repeated_folders_and_distinct_names_are_fine(tmp_path):
    data = tar(
        entry(b"sub/", kind=b"5"),
        entry(b"sub/a.txt", b"a"),
        entry(b"sub/", kind=b"5"),
        entry(b"./sub/", kind=b"5"),
        entry(b"sub/b.txt", b"b"),
        entry(b"./", kind=b"5"),
        entry("straße.txt".encode(), b"s"),
        entry(b"a.txt.txt", b"t"),
    )
    manifest, contents = accepted(data, tmp_path)
    assert set(contents) == {"sub/a.txt", "sub/b.txt", "straße.txt", "a.txt.txt"}


@pytest.mark.parametrize(
    "name",
    [
        "a<b.txt",
        "a>b.txt",
        "a:b.txt",
        'a"b.txt',
        "a|b.txt",
        "a?b.txt",
        "a*b.txt",
        "a\\b.txt",
        "tab\there.txt",
        "esc\x1b.txt",
        "CON",
        "con.txt",
        "Prn.ipynb",
        "aux.tar.gz",
        "NUL",
        "COM1.csv",
        "com9",
        "LPT1.txt",
        "lpt9",
        "sub/nul.txt",
        "con .txt",
        "ends-with-dot.",
        "ends-with-space ",
        "folder./x.txt",
    ],
)
def test_names_windows_cannot_store_are_refused(name):
    error = refused(tar(entry(name.encode(), b"x")), "rename it and submit again")
    assert repr(name)[1:-1][:20] in error.message or name[:5] in error.message


@pytest.mark.parametrize(
    "name", ["CONSOLE.txt", "com10.txt", "lpt.txt", "nul_results.csv", ".hidden", "a.b.c"]
)
def test_names_close_to_reserved_are_fine(name, tmp_path):
    _, contents = accepted(tar(entry(name.encode(), b"x")), tmp_path)
    assert contents == {name: b"x"}


def test_names_that_are_not_utf8_are_refused():
    refused(tar(entry(b"caf\xe9.txt", b"x")), "UTF-8", "rename")
    refused(tar(pax(record(b"path", b"\xff\xfe.txt")), entry(b"x", b"")), "UTF-8")
    refused(tar(long_name(b"ok/\xc3(.txt"), entry(b"x", b"")), "UTF-8")


def test_file_without_a_name_is_refused():
    refused(tar(entry(b"./", b"x")), "without a name")


@pytest.mark.parametrize(
    "parts",
    [
        (header(b"neg.txt", mtime=b"\xff" * 12),),
        (pax(record(b"mtime", b"-1")), entry(b"neg.txt", b"")),
        (pax(record(b"mtime", b"253402300800")), entry(b"y10k.txt", b"")),
        (header(b"far.txt", mtime=b"\x80" + (10**12).to_bytes(11, "big")),),
    ],
    ids=["negative-base256", "pax-negative", "pax-year-10000", "base256-far-future"],
)
def test_impossible_modification_times_are_refused(parts):
    refused(tar(*parts), "modification time")


def test_edge_modification_times_are_fine(tmp_path):
    manifest, _ = accepted(
        tar(
            entry(b"epoch.txt", b"", mtime=b"%011o\0" % 0),
            entry(b"late.txt", b"", mtime=b"%011o\0" % 253402300799),
        ),
        tmp_path,
    )
    assert [m.name for m in manifest.members] == ["epoch.txt", "late.txt"]


# --- the plugin refuses the same clashes, and unpacks only into a fresh folder -----------------


@pytest.mark.parametrize(
    "files",
    [
        [("data", b"1"), ("data/x.csv", b"2")],
        [("data/x.csv", b"2"), ("data", b"1")],
        [("a.txt", b"1"), ("a.txt", b"2")],
        [("a.txt", b"1"), ("A.txt", b"2")],
        [("caf\u00e9", b"1"), ("cafe\u0301", b"2")],
    ],
    ids=["file-then-inside", "inside-then-file", "duplicate", "case", "nfc-nfd"],
)
def test_extract_stream_refuses_duplicates_and_clashes(tmp_path, files):
    data = tar(*(entry(name.encode(), body) for name, body in files))
    with pytest.raises(UnsafeArchive, match="same name"):
        extract_stream(io.BytesIO(data), tmp_path / "dest")


def test_extract_stream_refuses_a_folder_that_is_not_empty(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError):
        extract_stream(io.BytesIO(tar(entry(b"old.txt", b"new"))), dest)
    assert (dest / "old.txt").read_text() == "old"


@pytest.mark.parametrize(
    "data",
    [
        b"not a tar" * 100,
        gzip.compress(b"not a tar" * 100),
        tar(entry(b"a.txt", b"a" * 2000))[:1100],
    ],
    ids=["text", "gzip-text", "cut"],
)
def test_extract_stream_reports_unreadable_archives_as_unsafe(tmp_path, data):
    with pytest.raises(UnsafeArchive):
        extract_stream(io.BytesIO(data), tmp_path / "dest")


# --- PAX records: only known keys, bounded values, no long runs of digits ---------------------


def test_posix_and_vendor_pax_records_are_accepted(tmp_path):
    records = [
        record(b"path", "straße/ä.txt".encode()),
        record(b"mtime", b"1700000000.123456789"),
        record(b"atime", b"1700000000.5"),
        record(b"ctime", b"1700000000.5"),
        record(b"uid", b"1000"),
        record(b"gid", b"1000"),
        record(b"uname", b"student"),
        record(b"gname", b"users"),
        record(b"hdrcharset", b"ISO-IR 10646 2000 UTF-8"),
        record(b"comment", b"c" * 1024),
        record(b"SCHILY.xattr.user.origin", b"\x00binary\xff" * 400),
        record(b"LIBARCHIVE.creationtime", b"1700000000"),
        record(b"RHT.security.selinux", b"unconfined_u:object_r:user_home_t:s0"),
    ]
    _, contents = accepted(tar(pax(*records), entry(b"x", b"pax")), tmp_path)
    assert contents == {"straße/ä.txt": b"pax"}


@pytest.mark.parametrize(
    "key", [b"foo", b"Path", b"GNU.volume.label", b"SUN.holesdata", b"LIBARCHIVEX"]
)
def test_pax_keys_the_exchange_does_not_know_are_refused(key):
    data = tar(entry(b"p1.ipynb", b"{}"), pax(record(key, b"1")), entry(b"x", b""))
    error = refused(data, "does not accept", "after 'p1.ipynb'", "nbgrader")
    assert repr(key.decode()) in error.message


@pytest.mark.parametrize(
    "key, bound",
    [
        (b"comment", 1024),
        (b"uname", 256),
        (b"mtime", 32),
        (b"hdrcharset", 64),
        (b"SCHILY.xattr.user.big", 4096),
        (b"linkpath", MAX_PATH_BYTES),
    ],
)
def test_pax_values_are_bounded(key, bound):
    refused(tar(pax(record(key, b"v" * (bound + 1))), entry(b"x", b"")), f"at most {bound}")


def test_long_runs_of_digits_in_a_pax_header_are_refused(tmp_path):
    run = b"7" * MAX_PAX_DIGITS
    _, contents = accepted(
        tar(pax(record(b"comment", run + b"-" + run)), entry(b"x.txt", b"x")), tmp_path
    )
    assert contents == {"x.txt": b"x"}
    words = ("digits", str(MAX_PAX_DIGITS), "after 'p1.ipynb'")
    first = entry(b"p1.ipynb", b"{}")
    refused(tar(first, pax(record(b"comment", run + b"7")), entry(b"x", b"")), *words)
    long_number = b"report-" + b"1" * 40 + b".txt"
    refused(tar(first, pax(record(b"path", long_number)), entry(b"x", b"")), *words)


def test_a_huge_digit_comment_is_refused_by_the_server_and_unpacked_by_the_plugin_fast(tmp_path):
    """CVE-2024-6232: ``tarfile`` on Python 3.11.7 takes ~5 s per 64 KiB PAX header of digits.
    The server refuses such headers (over its bound, or a long run of digits); the plugin (which
    may get an archive an older exchange stored) parses them in linear time."""
    comment = exactly(64 * 1024, b"comment", b"7")
    members = [pax(comment) + entry(b"f%d.txt" % n, b"x") for n in range(8)]
    members.append(pax(exactly(plugin_archive.MAX_EXTENSION_BYTES, b"comment", b"1")))
    data = tar(entry(b"p1.ipynb", b"{}"), *members, entry(b"last.txt", b"y"))
    refused(data, "PAX header", "after 'p1.ipynb'", str(MAX_PAX_HEADER))
    within = tar(entry(b"p1.ipynb", b"{}"), pax(exactly(MAX_PAX_HEADER, b"comment", b"7")))
    refused(within + entry(b"x", b""), "digits", "after 'p1.ipynb'")
    start = time.perf_counter()
    written = extract_stream(io.BytesIO(data), tmp_path / "dest")
    elapsed = time.perf_counter() - start
    assert len(written) == 10
    assert elapsed < 2, f"the plugin took {elapsed:.1f} s: PAX parsing is no longer linear"


# --- names and counts the plugin refuses are refused by the server --------------------------


@pytest.mark.parametrize(
    "parts",
    [
        (entry(b"", kind=b"5"),),
        (entry(b"", b"x"),),
        (pax(record(b"path", b"")), entry(b"sub/", kind=b"5")),
        (pax(record(b"path", b"")), entry(b"x", b"data")),
        (long_name(b""), entry(b"sub/", kind=b"5")),
    ],
    ids=["folder", "file", "pax-folder", "pax-file", "long-name-folder"],
)
def test_empty_names_are_refused_naming_the_member(parts, tmp_path):
    data = tar(entry(b"p1.ipynb", b"{}"), *parts)
    refused(data, "empty name", "after 'p1.ipynb'", "at byte", "create the archive again")
    with pytest.raises(UnsafeArchive):
        extract_stream(io.BytesIO(data), tmp_path / "dest")


def test_every_entry_counts_as_a_member_as_the_plugin_counts_them(tmp_path):
    limits = ArchiveLimits(max_upload_bytes=MiB, max_unpacked_bytes=MiB, max_members=3)
    root = entry(b"./", kind=b"5")
    data = tar(root, entry(b"a", b"1"), root, entry(b"b", b"2"))
    refused(data, "more than 3 members", error=PayloadTooLarge, limits=limits)
    with pytest.raises(UnsafeArchive, match="more than 3 members"):
        list(iter_safe_members(TarStream(io.BytesIO(data)), max_members=3))
    accepted(tar(root, entry(b"a", b"1"), entry(b"b", b"2")), tmp_path, limits)


def test_archive_limits_are_capped_at_what_the_plugin_unpacks():
    huge = ArchiveLimits(max_upload_bytes=2**50, max_unpacked_bytes=2**50, max_members=10**9)
    assert huge.max_members == MAX_MEMBERS_CEILING <= plugin_archive.MAX_MEMBERS
    assert huge.max_unpacked_bytes == MAX_UNPACKED_CEILING <= plugin_archive.MAX_UNPACKED_BYTES
    assert huge.max_upload_bytes == 2**50
    assert ArchiveLimits(1, 2, 3) == ArchiveLimits(
        max_upload_bytes=1, max_unpacked_bytes=2, max_members=3
    )
    defaults = Settings()
    assert defaults.max_archive_members <= MAX_MEMBERS_CEILING
    assert defaults.max_unpacked_bytes <= MAX_UNPACKED_CEILING
    assert max(MAX_PAX_HEADER, MAX_PATH_BYTES + 1) <= plugin_archive.MAX_EXTENSION_BYTES


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_ARCHIVE_MEMBERS", MAX_MEMBERS_CEILING + 1), ("MAX_UNPACKED_BYTES", 2**40 + 1)],
)
def test_settings_above_what_the_plugin_unpacks_are_refused_at_start(name, value):
    with pytest.raises(SettingsError, match=f"{name} must be at most"):
        load_settings({f"LTI_EXCHANGE_{name}": str(value)})
    at_most = {"MAX_ARCHIVE_MEMBERS": MAX_MEMBERS_CEILING, "MAX_UNPACKED_BYTES": 2**40}[name]
    assert getattr(load_settings({f"LTI_EXCHANGE_{name}": str(at_most)}), name.lower()) == at_most


# --- the plugin's own header reader ----------------------------------------------------------


def test_the_plugin_never_hands_a_header_to_tarfile(tmp_path, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("tarfile parsed a header")

    for name in ("fromtarfile", "frombuf", "_proc_member", "_proc_pax", "_proc_gnulong"):
        monkeypatch.setattr(tarfile.TarInfo, name, forbidden)
    data = tar(
        pax(record(b"path", "é/x.txt".encode()), record(b"mtime", b"1700000000.5")),
        entry(b"x", b"1"),
        long_name(b"deep/" * 30 + b"y.txt"),
        entry(b"cut", b"2"),
        pax(record(b"comment", b"git"), kind=b"g"),
        entry(b"z.txt", b"3", prefix=b"pre/fix"),
    )
    written = extract_stream(io.BytesIO(gzip.compress(data)), tmp_path / "dest")
    assert [str(p) for p in written] == ["é/x.txt", "deep/" * 30 + "y.txt", "pre/fix/z.txt"]
    assert (tmp_path / "dest" / "é" / "x.txt").stat().st_mtime == 1700000000.5


@pytest.mark.parametrize(
    "data, words",
    [
        (tar(entry(b"s", b"", kind=b"S")), "sparse"),
        (tar(pax(record(b"GNU.sparse.major", b"1")), entry(b"s", b"")), "sparse"),
        (tar(entry(b"././@LongLink", b"t\0", kind=b"K"), entry(b"l", kind=b"2")), "link"),
        (tar(entry(b"dev", kind=b"3")), "special entries"),
        (tar(header(b"dir/", size=512, kind=b"5") + bytes(512)), "folder that holds data"),
        (tar(entry(b"caf\xe9.txt", b"x")), "not UTF-8"),
        (tar(entry(b"a", b"1"), entry(b"b", b"2", checksum_delta=1)), "checksum"),
        (tar(pax(record(b"path", b"p"), kind=b"g"), entry(b"a", b"")), "global"),
        (tar(long_name(b"a"), pax(record(b"path", b"b")), entry(b"x", b"")), "two extended"),
        (tar(pax(record(b"path", b"a"))), "no member"),
        (tar(pax(b"12 path=abc"), entry(b"x", b"")), "malformed"),
        (tar(pax(record(b"path", b"a") * 2), entry(b"x", b"")), "twice"),
        (tar(pax(record(b"size", b"+5")), entry(b"x", b"")), "invalid size"),
        (tar(header(b"x", size_field=b"12_3\0       ")), "not a number"),
        (tar(header(b"././@PaxHeader", size_field=b"\xff" * 12, kind=b"x")), "negative size"),
        (header(b"././@PaxHeader", size=256 * MiB, kind=b"x") + bytes(4096), "extended header"),
        (tar(entry(b"a", b"1"))[:300], "truncated"),
        (b"", "empty"),
    ],
    ids=[
        "gnu-sparse",
        "pax-sparse",
        "long-link",
        "device",
        "folder-with-data",
        "not-utf8",
        "bad-checksum-later",
        "global-path",
        "two-extensions",
        "extension-alone",
        "malformed-pax",
        "pax-key-twice",
        "pax-size",
        "size-not-octal",
        "negative-size",
        "pax-256MiB",
        "cut-header",
        "empty",
    ],
)
def test_the_plugin_refuses_what_it_cannot_read_unambiguously(tmp_path, data, words):
    with pytest.raises(UnsafeArchive) as caught:
        extract_stream(io.BytesIO(data), tmp_path / "dest")
    assert words in str(caught.value)


def test_the_plugin_clamps_impossible_modification_times(tmp_path):
    """An older exchange stored such archives: the files unpack, dated within 1970..9999."""
    far = b"\x80" + (2**80).to_bytes(11, "big")  # os.utime would overflow
    data = tar(
        header(b"far.txt", size=1, mtime=far) + pad(b"f"),
        header(b"negative.txt", size=1, mtime=b"\xff" * 12) + pad(b"n"),
        pax(record(b"mtime", b"nan")),
        entry(b"nan.txt", b"x"),
        pax(record(b"mtime", b"1e400")),
        entry(b"inf.txt", b"i"),
    )
    dest = tmp_path / "dest"
    assert len(extract_stream(io.BytesIO(data), dest)) == 4
    mtimes = {p.name: int(p.stat().st_mtime) for p in dest.iterdir()}
    assert mtimes.pop("far.txt") > MTIME  # 9999-12-31, or the latest date the file system stores
    assert mtimes == {
        "negative.txt": 0,
        "nan.txt": MTIME,
        "inf.txt": MTIME,
    }


def test_the_plugin_reads_a_stream_that_ends_without_its_end_block(tmp_path):
    """As ``tarfile`` does: older exchanges stored such archives (the server now refuses them)."""
    written = extract_stream(io.BytesIO(entry(b"a.txt", b"a") + entry(b"b.txt", b"b")), tmp_path)
    assert [str(p) for p in written] == ["a.txt", "b.txt"]
