"""Durable writes: flushes shared by concurrent uploads (group commit) still cover every one of
them; blobs written side by side are all whole; a writer that dies before commit leaves no blob;
a SQLite commit that answers 201 has its WAL flushed."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from lti_exchange.db import _sqlite_pragmas, make_durable
from lti_exchange.storage import FilesystemStorage
from lti_exchange.storage.durable import WRITEBACK_BYTES, GroupSync

MiB = 1024 * 1024


class RecordingSync(GroupSync):
    """A real ``GroupSync`` that notes when each flush began and ended (a step counter)."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.flushes: list[tuple[int, int]] = []
        self.fail_first = fail_first
        self._steps = 0
        self._lock2 = threading.Lock()

    def step(self) -> int:
        with self._lock2:
            self._steps += 1
            return self._steps

    def _flush_path(self, path: str) -> None:
        began = self.step()
        time.sleep(0.02)  # a slow disk: others arrive while this flush runs
        if self.fail_first and not self.flushes:
            self.flushes.append((began, self.step()))
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._flush_path(path)
        self.flushes.append((began, self.step()))


def test_every_caller_returns_after_a_flush_that_began_after_it_called(tmp_path):
    sync = RecordingSync()
    spans: list[tuple[int, int]] = []

    def call(_: int) -> None:
        called = sync.step()
        sync.sync(str(tmp_path))
        spans.append((called, sync.step()))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(48)))
    assert len(spans) == 48
    for called, returned in spans:
        assert any(called < began and ended < returned for began, ended in sync.flushes), (
            called,
            returned,
            sync.flushes,
        )
    assert len(sync.flushes) < 48  # flushes were shared


def test_a_failed_flush_fails_every_caller_it_covered(tmp_path):
    sync = RecordingSync(fail_first=True)
    outcomes: list[str] = []

    def call(_: int) -> None:
        try:
            sync.sync(str(tmp_path))
            outcomes.append("ok")
        except OSError as exc:
            assert exc.errno == errno.EIO
            outcomes.append("failed")

    first = threading.Thread(target=call, args=(0,))
    first.start()
    while not sync._steps:  # the first flush is under way
        time.sleep(0.001)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(8)))
    first.join()
    # The first flush failed its one caller; the others needed a later flush, which worked.
    assert outcomes.count("failed") == 1
    assert outcomes.count("ok") == 8


def test_concurrent_writers_all_store_whole_blobs(tmp_path):
    storage = FilesystemStorage(tmp_path / "storage")
    sizes = [MiB + i for i in range(15)] + [WRITEBACK_BYTES + 3 * MiB]  # one starts writeback

    def write(size: int) -> tuple[str, str, int]:
        data = os.urandom(size)
        writer = storage.writer("submissions")
        with memoryview(data) as view:
            for start in range(0, size, MiB):
                writer.write(view[start : start + MiB])
        blob = writer.commit()
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        return blob.key, blob.sha256, size

    with ThreadPoolExecutor(16) as pool:
        blobs = list(pool.map(write, sizes))
    assert storage.count_blobs() == len(sizes)
    assert storage.count_partial() == 0
    for key, sha256, size in blobs:
        with storage.open(key) as handle:
            data = handle.read()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == sha256


KILLED_WRITER = """
import os, sys
from lti_exchange.storage import FilesystemStorage
writer = FilesystemStorage(sys.argv[1]).writer("submissions")
writer.write(os.urandom(3 * 1024 * 1024))
os.kill(os.getpid(), 9)  # the power cut / OOM kill before commit
"""


def test_a_writer_killed_before_commit_leaves_no_blob(tmp_path):
    root = tmp_path / "storage"
    answer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], check=False)
    assert answer.returncode == -9
    storage = FilesystemStorage(root)
    assert storage.count_blobs() == 0
    assert storage.count_partial() == 1  # only a partial file, which the sweeper removes
    assert storage.sweep_partial(older_than=0) == 1
    assert storage.count_partial() == 0


def test_make_durable_flushes_the_sqlite_wal(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    event.listen(engine, "connect", _sqlite_pragmas)
    flushed: list[str] = []
    real = os.fdatasync

    def noting(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", noting)
    with Session(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
        session.commit()
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        make_durable(session)
    engine.dispose()
    assert flushed == [str(tmp_path / "db.sqlite3-wal")]


@pytest.mark.parametrize("url", ["sqlite://", "postgresql://nobody@127.0.0.1:1/none"])
def test_make_durable_leaves_other_databases_alone(url, monkeypatch):
    monkeypatch.setattr(os, "fdatasync", lambda fd: pytest.fail("no flush expected"))
    engine = create_engine(url)
    with Session(engine) as session:
        make_durable(session)  # nothing to flush: in memory, or the server flushes at commit


@pytest.mark.parametrize(
    "key", ["../x", "submissions/../../x", "/etc/passwd", "", ".", "a/../../blobs2/x", "a\0b"]
)
def test_a_key_that_leaves_the_blob_directory_is_refused(tmp_path, key):
    storage = FilesystemStorage(tmp_path)
    with pytest.raises(ValueError, match="escapes the storage root"):
        storage.path_for(key)
    assert (
        storage.path_for("submissions/ab/ab12") == tmp_path.resolve() / "blobs/submissions/ab/ab12"
    )


def test_a_blob_folder_removed_by_hand_is_made_again(tmp_path):
    storage = FilesystemStorage(tmp_path)
    first = storage.writer("submissions")
    first.write(b"one")
    stored = first.commit()
    folder = storage.path_for(stored.key).parent
    os.remove(storage.path_for(stored.key))
    os.rmdir(folder)  # an operator cleaned up; this process still believes the folder exists
    second = storage.writer("submissions")
    second.key = stored.key.rsplit("/", 1)[0] + "/" + "f" * 32  # the same folder
    second.write(b"two")
    again = second.commit()
    with storage.open(again.key) as fh:
        assert fh.read() == b"two"
    assert list(storage.tmp_dir.iterdir()) == []


class ShrinkingDisk(FilesystemStorage):
    """A real store whose free space is reported as ``start`` minus the bytes written so far
    (a full disk cannot be made on demand here); counts how often it was asked."""

    def __init__(self, root, start: int, reserve: int) -> None:
        super().__init__(root, min_free_bytes=reserve)
        self.start = start
        self.asked = 0

    def free_bytes(self) -> int:
        self.asked += 1
        written = sum(p.stat().st_size for p in self.tmp_dir.iterdir())
        return self.start - written


def test_free_space_is_checked_once_per_room_check_step_not_per_write(tmp_path):
    from lti_exchange.storage.filesystem import ROOM_CHECK_BYTES

    storage = ShrinkingDisk(tmp_path, start=10**12, reserve=MiB)
    writer = storage.writer("submissions")
    piece = os.urandom(64 * 1024)
    pieces = (2 * ROOM_CHECK_BYTES + MiB) // len(piece)
    for _ in range(pieces):
        writer.write(piece)
    writer.commit()
    assert storage.asked == 3  # at 0, 8 and 16 MiB of 17 MiB written in 272 pieces


def test_an_upload_that_eats_into_the_reserve_is_refused_and_leaves_nothing(tmp_path):
    from lti_exchange.errors import InsufficientStorage
    from lti_exchange.storage.filesystem import ROOM_CHECK_BYTES

    reserve = 4 * MiB
    storage = ShrinkingDisk(tmp_path, start=reserve + ROOM_CHECK_BYTES + MiB, reserve=reserve)
    writer = storage.writer("submissions")
    piece = os.urandom(MiB)
    with pytest.raises(InsufficientStorage):
        for _ in range(3 * ROOM_CHECK_BYTES // MiB):
            writer.write(piece)
    assert list(storage.tmp_dir.iterdir()) == []
    assert list(storage.blob_dir.rglob("*.*")) == []
