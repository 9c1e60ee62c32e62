"""SHA-256 of what is stored: large streams are hashed in a thread beside the writing, with the
same digest as hashing in place, and no thread outlives its writer."""

from __future__ import annotations

import hashlib
import os
import threading

from lti_exchange.storage import FilesystemStorage
from lti_exchange.storage.base import BACKGROUND_HASH_AFTER, HashingCounter

MiB = 1024 * 1024


def hashing_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "blob-sha256"]


def test_a_large_stream_fed_from_a_reused_buffer_has_the_right_digest():
    data = os.urandom(BACKGROUND_HASH_AFTER + 5 * MiB + 123)
    buffer = bytearray(MiB)  # the caller reuses its buffer after every update, as uploads do
    counter = HashingCounter()
    for start in range(0, len(data), MiB):
        piece = data[start : start + MiB]
        buffer[: len(piece)] = piece
        counter.update(memoryview(buffer)[: len(piece)])
        buffer[:] = bytes(MiB)  # overwritten at once
    assert hashing_threads(), "past the threshold the hashing runs in its own thread"
    assert counter.hexdigest() == hashlib.sha256(data).hexdigest()
    assert counter.size == len(data)
    assert not hashing_threads()


def test_a_small_stream_is_hashed_in_place_without_a_thread():
    counter = HashingCounter()
    for _ in range(BACKGROUND_HASH_AFTER // MiB):
        counter.update(b"x" * MiB)
        assert not hashing_threads()
    assert counter.hexdigest() == hashlib.sha256(b"x" * BACKGROUND_HASH_AFTER).hexdigest()


def test_a_discarded_large_blob_ends_its_hashing_thread(tmp_path):
    storage = FilesystemStorage(tmp_path)
    writer = storage.writer("releases")
    piece = os.urandom(MiB)
    for _ in range(BACKGROUND_HASH_AFTER // MiB + 3):
        writer.write(piece)
    assert hashing_threads()
    writer.discard()
    assert not hashing_threads()
    assert list(storage.tmp_dir.iterdir()) == []


def test_a_committed_large_blob_has_the_digest_of_its_bytes(tmp_path):
    storage = FilesystemStorage(tmp_path)
    writer = storage.writer("releases")
    data = os.urandom(BACKGROUND_HASH_AFTER + 2 * MiB + 7)
    for start in range(0, len(data), 256 * 1024):
        writer.write(memoryview(data)[start : start + 256 * 1024])
    blob = writer.commit()
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert not hashing_threads()
    with storage.open(blob.key) as stored:
        assert stored.read() == data
