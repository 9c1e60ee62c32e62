"""Blob files written and read around the page cache: every byte lands in order whatever the pieces'
sizes, staging buffers are reused, and a file system (or a write) that refuses ``O_DIRECT``
falls back to the page cache without losing a byte."""

from __future__ import annotations

import errno
import fcntl
import os
import random

import pytest

from lti_exchange.storage import FilesystemStorage, direct_io
from lti_exchange.storage.direct_io import ALIGN, STAGING_BYTES, DirectFile, DirectReader
from tests.support import recorded_writes


def takes_o_direct(folder) -> bool:
    probe = folder / "probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    return True


def write_pieces(path, sizes: list[int]) -> tuple[bytes, DirectFile]:
    data = os.urandom(sum(sizes))
    file = DirectFile(str(path))
    done = 0
    for size in sizes:
        file.write(memoryview(data)[done : done + size])
        done += size
    file.finish()
    os.fsync(file.fileno())
    file.close()
    return data, file


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [1],
        [ALIGN - 1],
        [ALIGN],
        [ALIGN + 1],
        [STAGING_BYTES],
        [STAGING_BYTES + 1],
        [3, STAGING_BYTES - 3, 7, 2 * STAGING_BYTES + 5],
        [ALIGN * 3 + 17] * 700,
    ],
    ids=lambda sizes: f"{len(sizes)} pieces, {sum(sizes)} bytes",
)
def test_every_byte_lands_in_order(tmp_path, sizes):
    data, _file = write_pieces(tmp_path / "blob", sizes)
    assert (tmp_path / "blob").read_bytes() == data


def test_random_piece_sizes(tmp_path):
    rng = random.Random(7)
    for round_ in range(20):
        sizes = [rng.choice((1, 511, 4096, 70_000, STAGING_BYTES + 9)) for _ in range(6)]
        data, _file = write_pieces(tmp_path / f"blob{round_}", sizes)
        assert (tmp_path / f"blob{round_}").read_bytes() == data


def test_whole_blocks_go_around_the_page_cache_where_the_file_system_allows(tmp_path):
    file = DirectFile(str(tmp_path / "blob"))
    try:
        assert file.direct == takes_o_direct(tmp_path)
        if file.direct:
            assert fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_DIRECT
        file.write(b"x" * (STAGING_BYTES + 10))
        file.finish()  # the tail (10 bytes) is not a whole block: through the page cache
        assert not fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_DIRECT
    finally:
        file.close()
    assert (tmp_path / "blob").stat().st_size == STAGING_BYTES + 10


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "blob").write_bytes(b"kept")
    with pytest.raises(FileExistsError):
        DirectFile(str(tmp_path / "blob"))
    assert (tmp_path / "blob").read_bytes() == b"kept"


def test_staging_buffers_are_reused(tmp_path):
    first = DirectFile(str(tmp_path / "a"))
    buffer = first._buffer
    first.close()
    first.close()  # idempotent: the buffer is given back once
    second = DirectFile(str(tmp_path / "b"))
    assert second._buffer is buffer
    second.close()


@pytest.fixture
def no_o_direct(monkeypatch):
    """A file system that refuses O_DIRECT at open (EINVAL), as older tmpfs does."""
    real_open = os.open

    def open_without_direct(path, flags, mode=0o777):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_open(path, flags, mode)

    monkeypatch.setattr(direct_io.os, "open", open_without_direct)


def test_a_file_system_without_o_direct_gets_the_page_cache(tmp_path, no_o_direct):
    data, file = write_pieces(tmp_path / "blob", [5, STAGING_BYTES, 9 * 1024 * 1024])
    assert file.direct is False
    assert (tmp_path / "blob").read_bytes() == data


def test_a_refused_direct_write_is_written_through_the_page_cache(tmp_path, monkeypatch):
    real_write = os.write
    refused = []

    def refuse_direct(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_write(fd, data)

    monkeypatch.setattr(direct_io.os, "write", refuse_direct)
    data, file = write_pieces(tmp_path / "blob", [STAGING_BYTES * 2 + 123])
    assert file.direct is False
    assert refused == ([STAGING_BYTES] if takes_o_direct(tmp_path) else [])
    assert (tmp_path / "blob").read_bytes() == data


def test_other_open_errors_are_not_hidden(tmp_path):
    with pytest.raises(FileNotFoundError):
        DirectFile(str(tmp_path / "missing-folder" / "blob"))


@pytest.mark.parametrize(
    ("kind", "around_the_cache"),
    [("releases", False), ("submissions", True), ("feedback", True)],
)
def test_which_blobs_go_around_the_page_cache(tmp_path, kind, around_the_cache):
    """Releases are read by every student soon after: cached. Submissions and feedback are read
    once, later: around the cache where the file system allows it."""
    storage = FilesystemStorage(tmp_path / "storage")
    writer = storage.writer(kind)
    assert writer._file is not None
    assert writer._file.direct == (around_the_cache and takes_o_direct(tmp_path))
    writer.write(b"a" * (STAGING_BYTES + 1))
    blob = writer.commit()
    assert storage.open(blob.key).read() == b"a" * (STAGING_BYTES + 1)


@pytest.mark.parametrize("size", [0, 1, ALIGN, ALIGN + 1, STAGING_BYTES, 2 * STAGING_BYTES + 99])
def test_a_reader_gives_every_byte_in_order(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "blob").write_bytes(data)
    with DirectReader(str(tmp_path / "blob")) as reader:
        assert reader.direct == takes_o_direct(tmp_path)
        first = reader.read(10)
        target = bytearray(ALIGN + 3)
        got = reader.readinto(target)
        middle = reader.read(7000)
        rest = reader.read()  # all that is left, across staging buffers
        assert first + bytes(target[:got]) + middle + rest == data
        assert reader.read() == b""
        assert not hasattr(reader, "fileno") or not _has_fileno(reader)
    with DirectReader(str(tmp_path / "blob")) as reader:
        assert reader.readall() == data


def _has_fileno(reader) -> bool:
    try:
        reader.fileno()
    except OSError:
        return False
    return True


def test_a_reader_without_o_direct_reads_through_the_page_cache(tmp_path, no_o_direct):
    data = os.urandom(STAGING_BYTES + 5)
    (tmp_path / "blob").write_bytes(data)
    with DirectReader(str(tmp_path / "blob")) as reader:
        assert reader.direct is False
        assert reader.readall() == data


def test_a_closed_reader_gives_its_buffer_back(tmp_path):
    (tmp_path / "blob").write_bytes(b"x")
    reader = DirectReader(str(tmp_path / "blob"))
    buffer = reader._buffer
    reader.close()
    reader.close()
    assert reader.closed
    writer = DirectFile(str(tmp_path / "other"))
    assert writer._buffer is buffer
    writer.close()


def test_page_cache_writes_go_in_pieces_of_at_most_256_kib(tmp_path, monkeypatch):
    # On a VM that returns freed memory to its host, 1 MiB writes filled the page cache 5x
    # slower than 256 KiB ones (direct_io.PAGE_CACHE_PIECE).
    sizes = recorded_writes(monkeypatch, direct_io)
    data = os.urandom(3 * 1024 * 1024 + 123)
    file = DirectFile(str(tmp_path / "release"), direct=False)
    file.write(data[: 1024 * 1024])
    file.write(data[1024 * 1024 :])
    file.finish()
    file.close()
    assert (tmp_path / "release").read_bytes() == data
    assert sizes and max(sizes) <= direct_io.PAGE_CACHE_PIECE == 256 * 1024
    assert sum(sizes) == len(data)


def test_writes_around_the_page_cache_keep_their_size(tmp_path, monkeypatch):
    sizes = recorded_writes(monkeypatch, direct_io)
    data, file = write_pieces(tmp_path / "blob", [STAGING_BYTES * 2])
    assert (tmp_path / "blob").read_bytes() == data
    if takes_o_direct(tmp_path):  # one write per staging buffer: no page cache to spare
        assert sizes == [STAGING_BYTES, STAGING_BYTES]
    else:  # a file system without O_DIRECT: the page cache, in pieces
        assert max(sizes) <= direct_io.PAGE_CACHE_PIECE
