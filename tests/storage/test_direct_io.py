"""Blob files written around the page cache: every byte lands in order whatever the pieces'
sizes, staging buffers are reused, and a file system (or a write) that refuses ``O_DIRECT``
falls back to the page cache without losing a byte."""

from __future__ import annotations

import errno
import fcntl
import os
import random

import pytest

from lti_exchange.storage import direct_io
from lti_exchange.storage.direct_io import ALIGN, STAGING_BYTES, DirectFile


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


def test_a_file_system_without_o_direct_gets_the_page_cache(tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, mode=0o777):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_open(path, flags, mode)

    monkeypatch.setattr(direct_io.os, "open", no_direct)
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
