"""The plugin's streaming transfers: a folder packed while it is sent, hashing in a thread, and
the tar reader that hands file data on without copying. No server."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time

import pytest
from nbgrader.utils import ignore_patterns

from lti_exchange.archives.upload import ArchiveLimits, scan_archive
from lti_exchange.errors import PayloadTooLarge
from nbgrader_plugin import archive
from nbgrader_plugin.archive import (
    HashingReader,
    MemberReader,
    PackError,
    TarStream,
    UnsafeArchive,
    extract_stream,
    iter_safe_members,
    json_list_member,
    pack_directory,
)
from nbgrader_plugin.portable_names import UnportableNames
from tests.support import make_tar, recorded_writes


def reference_tar(source, extra: dict[str, bytes], mtime: int) -> bytes:
    """What ``tarfile`` writes for the folder (the plugin's former temp-file packing)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
        for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.ipynb").write_text('{"cells": []}')
    (source / "sub" / "empty.txt").write_bytes(b"")
    (source / "sub" / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (source / ("caf\u00e9-" + "n" * 120 + ".txt")).write_bytes(b"a long, non-ASCII name")
    (source / "link").symlink_to("a.ipynb")
    return source


@pytest.mark.parametrize("read_size", [1, 511, 4096, 1024 * 1024, -1])
def test_a_packed_folder_is_the_tar_tarfile_writes(folder, monkeypatch, read_size):
    monkeypatch.setattr(archive.time, "time", lambda: 1_700_000_000.5)
    extra = {"submission_secret.txt": b"s3cret"}
    pack, size = pack_directory(folder, extra=extra)
    with pack:
        parts = []
        while chunk := pack.read(read_size):
            parts.append(bytes(chunk))
        assert pack.tell() == size
        pack.seek(0)  # sent again (a refreshed token): the same bytes
        again = pack.read(10 * size)
    data = b"".join(parts)
    assert data == reference_tar(folder, extra, 1_700_000_000) == again
    assert size == len(data)
    assert pack.links_left_out == ["link"]  # not packed, and named for the user


@pytest.mark.parametrize("buffer_size", [1, 513, 64 * 1024, 1024 * 1024])
def test_readinto_fills_a_reused_buffer_with_the_same_tar(folder, monkeypatch, buffer_size):
    monkeypatch.setattr(archive.time, "time", lambda: 1_700_000_000.5)
    pack, size = pack_directory(folder)
    buffer = bytearray(buffer_size)
    parts = []
    with pack:
        while count := pack.readinto(buffer):
            assert count == buffer_size or pack.tell() == size  # short only at the end
            parts.append(bytes(buffer[:count]))
    assert b"".join(parts) == reference_tar(folder, {}, 1_700_000_000)


def test_a_read_holds_one_chunk_at_a_time(folder):
    """A header and a file's data are not joined after reading (two large objects at once
    took fresh pages on every read): a 1 MiB read allocates about 1 MiB."""
    import tracemalloc

    pack, _size = pack_directory(folder)
    with pack:
        pack.read(4096)  # into the big file's data
        tracemalloc.start()
        try:
            while chunk := pack.read(1024 * 1024):
                del chunk
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 1.25 * 1024 * 1024


def test_an_upload_reads_into_one_buffer_and_gives_it_back(folder):
    from nbgrader_plugin import client

    pack, size = pack_directory(folder)
    body = client._UploadBody(pack, size, None)  # noqa: SLF001 - the connection's view
    sent = []
    with pack:
        while data := body.read(client.UPLOAD_CHUNK):
            assert isinstance(data, memoryview) and data.obj is body._buffer  # noqa: SLF001
            sent.append(bytes(data))
    used = body._buffer  # noqa: SLF001
    body.close()
    again, _size = pack_directory(folder)
    with again:
        assert b"".join(sent) == again.read(10 * size)
    assert body.sent == size
    assert client._SEND_BUFFERS.take() is used  # noqa: SLF001 - kept for the next upload


def test_a_file_that_shrinks_while_it_is_sent_fails_the_pack(folder):
    pack, _size = pack_directory(folder)
    (folder / "sub" / "data.bin").write_bytes(b"short now")
    with pack, pytest.raises(PackError, match="became shorter while it was being sent"):
        while pack.read(1024 * 1024):
            pass


def test_a_file_gone_before_it_is_sent_fails_the_pack(folder):
    pack, _size = pack_directory(folder)
    (folder / "sub" / "data.bin").unlink()
    with pack, pytest.raises(PackError, match="cannot read .*data.bin"):
        while pack.read(1024 * 1024):
            pass


@pytest.mark.parametrize("size", [0, 100, 8 * 1024 * 1024 + 1, 20 * 1024 * 1024 + 3])
def test_the_hash_is_of_every_byte_read_also_when_hashed_in_a_thread(size):
    data = os.urandom(size)
    reader = HashingReader(io.BytesIO(data))
    got = []
    while chunk := reader.read(777_777):
        got.append(bytes(chunk))
    assert b"".join(got) == data
    assert reader.size == size
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    reader.read(10)  # after the end: nothing, and the digest stays
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_an_abandoned_reader_ends_its_hashing_thread():
    import threading

    before = threading.active_count()
    reader = HashingReader(io.BytesIO(os.urandom(12 * 1024 * 1024)))
    reader.read(10 * 1024 * 1024)
    assert threading.active_count() == before + 1
    del reader
    deadline = time.time() + 10
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_the_tar_reader_reads_what_tarfile_reads(folder):
    pack, _size = pack_directory(folder)
    data = pack.read(100 * 1024 * 1024)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        expected = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]

    class Trickle(io.BytesIO):
        """Short reads, as a network gives them."""

        def read(self, size=-1):
            return super().read(min(size, 1000) if size and size > 0 else 1000)

    stream = TarStream(Trickle(data))
    got = {}
    for name, info in iter_safe_members(stream):
        got[str(name)] = b"".join(stream.data(info.size)) if name.stem != "a" else b"skipped"
    assert got.pop("a.ipynb") == b"skipped"  # data not taken is skipped
    expected.pop("a.ipynb")
    assert got == expected


def test_collect_style_nesting_unpacks_each_inner_archive(tmp_path, folder):
    """An outer tar of stored archives (what collect downloads), each unpacked as it passes."""
    inner, _size = pack_directory(folder)
    inner_bytes = inner.read(100 * 1024 * 1024)
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w") as tar:
        for n in (1, 2):
            info = tarfile.TarInfo(f"submissions/{n}.tar")
            info.size = len(inner_bytes)
            tar.addfile(info, io.BytesIO(inner_bytes))
    stream = TarStream(io.BytesIO(outer.getvalue()))
    for name, info in iter_safe_members(stream):
        reader = HashingReader(MemberReader(stream.data(info.size)))
        written = extract_stream(reader, tmp_path / name.stem)
        reader.drain()
        assert reader.sha256.hexdigest() == hashlib.sha256(inner_bytes).hexdigest()
        assert "sub/data.bin" in {str(p) for p in written}
        assert (tmp_path / name.stem / "sub" / "data.bin").read_bytes() == (
            folder / "sub" / "data.bin"
        ).read_bytes()


def test_unpacked_files_are_written_in_pieces_of_at_most_256_kib(tmp_path, monkeypatch):
    # On a VM that returns freed memory to its host, 1 MiB writes filled the page cache 5x
    # slower than 256 KiB ones (nbgrader_plugin.archive.PAGE_CACHE_PIECE).
    sizes = recorded_writes(monkeypatch, archive)
    data = os.urandom(2 * 1024 * 1024 + 5)
    target = tmp_path / "data.bin"
    archive.write_file(target, [data[: 1024 * 1024], data[1024 * 1024 :]], 1_700_000_000)
    assert target.read_bytes() == data
    assert target.stat().st_mtime == 1_700_000_000
    assert max(sizes) <= archive.PAGE_CACHE_PIECE == 256 * 1024


def json_member_of(data: bytes, limit: int = 1000):
    stream = TarStream(io.BytesIO(make_tar({"missing.json": data})))
    info = next(iter(stream))
    return json_list_member(stream, info, limit)


def test_a_listing_member_keeps_its_objects_and_drops_anything_else():
    data = b'[{"name": "a"}, 3, "x", null, {"name": "b"}]'
    assert json_member_of(data) == [{"name": "a"}, {"name": "b"}]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"[{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"name": "a"}', "not a list"),
        (b"42", "not a list"),
        (b"[" + b"{}, " * 400 + b"{}]", "too large"),
    ],
)
def test_a_listing_member_that_is_no_list_of_objects_is_refused(data, words):
    with pytest.raises(UnsafeArchive, match=words):
        json_member_of(data)


@pytest.mark.parametrize("delays", [[-1], [601], [1.0] * 11])
def test_download_retry_delays_out_of_bounds_are_refused_with_what_to_set(delays):
    from traitlets import TraitError
    from traitlets.config import Config

    from nbgrader_plugin import ExchangeFetchAssignment

    config = Config()
    config.Exchange.download_retry_delays = delays
    with pytest.raises(TraitError) as refused:
        ExchangeFetchAssignment(config=config)
    assert "c.Exchange.download_retry_delays must hold at most 10 waits" in str(refused.value)


def test_download_retry_delays_default_and_none():
    from traitlets.config import Config

    from nbgrader_plugin import ExchangeCollect

    assert ExchangeCollect().download_retry_delays == [1.0, 2.0, 4.0]
    config = Config()
    config.Exchange.download_retry_delays = []
    assert ExchangeCollect(config=config).download_retry_delays == []


def test_empty_folders_are_packed_once_each_and_named_like_files(tmp_path):
    source = tmp_path / "src"
    (source / "output").mkdir(parents=True)
    (source / "deep" / "er").mkdir(parents=True)  # only the innermost: it makes its parents
    (source / "full").mkdir()
    (source / "full" / "x.txt").write_text("x")
    (source / ".ipynb_checkpoints").mkdir()  # ignored: not sent at all
    ignore = ignore_patterns(exclude=[".ipynb_checkpoints"])
    pack, size = pack_directory(source, ignore=ignore)
    with pack, tarfile.open(fileobj=io.BytesIO(pack.read(10 * size))) as tar:
        members = [(m.name, m.isdir(), m.size) for m in tar]
    assert members == [("full/x.txt", False, 1), ("deep/er", True, 0), ("output", True, 0)]

    (source / "output").rmdir()
    (source / "con").mkdir()  # a reserved name on Windows, even for an empty folder
    with pytest.raises(UnportableNames, match="con"):
        pack_directory(source, ignore=ignore)


def test_a_file_that_grows_while_it_is_sent_fails_the_pack(folder):
    """Jupyter's autosave between listing and sending: the longer file would go out cut short."""
    pack, _size = pack_directory(folder)
    with (folder / "sub" / "data.bin").open("ab") as grown:
        grown.write(b"more")
    with pack, pytest.raises(PackError, match="data.bin grew while it was being sent"):
        while pack.read(1024 * 1024):
            pass


def server_accepts(data: bytes, members: int, unpacked: int) -> bool:
    """Whether the exchange's own archive check takes ``data`` with these limits exactly."""
    limits = ArchiveLimits(
        max_upload_bytes=len(data), max_unpacked_bytes=unpacked, max_members=members
    )
    try:
        scan_archive(io.BytesIO(data), limits)
    except PayloadTooLarge:
        return False
    return True


def test_a_pack_counts_its_members_and_bytes_as_the_exchange_does(folder):
    """What an upload declares (``X-Archive-Members``, ``X-Archive-Unpacked-Bytes``) is what
    the exchange counts: one member per file and empty folder (a long or non-ASCII name's PAX
    header is not one), the files' bytes. The exchange's own check takes the pack with exactly
    those limits and refuses it with one less."""
    (folder / "empty" / "inner").mkdir(parents=True)
    pack, _size = pack_directory(folder, extra={"submission_secret.txt": b"s3cret"})
    with pack:
        data = bytes(pack.read(10 * pack.size))
    assert pack.member_count == 6  # 4 files (one with a long non-ASCII name), the secret, a folder
    members, unpacked = pack.member_count, pack.unpacked_size
    assert server_accepts(data, members, unpacked)
    assert not server_accepts(data, members - 1, unpacked)
    assert not server_accepts(data, members, unpacked - 1)
