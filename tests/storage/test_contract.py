"""One contract for every blob store, run against the local directory and S3 alike."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from lti_exchange.storage import BlobNotFound, new_blob_key
from tests.storage.conftest import pending_uploads

MiB = 1024**2


def write_blob(storage, data: bytes, kind: str = "submissions", chunk: int = MiB):
    writer = storage.writer(kind)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    return writer.commit()


def read_all(storage, key: str, chunk: int = MiB) -> bytes:
    parts = []
    with storage.open(key) as handle:
        while piece := handle.read(chunk):
            parts.append(piece)
    return b"".join(parts)


def listed_keys(storage) -> set[str]:
    return {info.key for info in storage.iter_blobs()}


def test_nothing_is_visible_before_commit(storage):
    writer = storage.writer("submissions")
    writer.write(b"half of it")
    assert not storage.exists(writer.key)
    assert writer.key not in listed_keys(storage)
    with pytest.raises(BlobNotFound):
        storage.open(writer.key)
    blob = writer.commit()
    assert blob.key == writer.key
    assert storage.exists(blob.key)
    assert storage.size(blob.key) == len(b"half of it")
    assert read_all(storage, blob.key) == b"half of it"


def test_the_stored_hash_and_size_are_those_of_the_bytes(storage):
    data = os.urandom(300_000)
    blob = write_blob(storage, data, chunk=7_000)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert read_all(storage, blob.key, chunk=4096) == data


def test_an_empty_blob_is_stored_and_read(storage):
    blob = storage.writer("feedback").commit()
    assert (blob.size, blob.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert read_all(storage, blob.key) == b""


def test_a_large_blob_streams_in_and_out_in_parts(storage):
    data = os.urandom(40 * MiB)  # several S3 parts
    blob = write_blob(storage, data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.size(blob.key) == len(data)
    digest = hashlib.sha256()
    with storage.open(blob.key) as handle:
        while piece := handle.read(MiB):
            assert len(piece) <= MiB
            digest.update(piece)
    assert digest.hexdigest() == blob.sha256
    assert pending_uploads(storage) == 0


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, MiB - 1, MiB, 3 * MiB + 7])
def test_a_blob_read_once_gives_every_byte(storage, size):
    """Collect and feedback downloads read each blob once, start to end (``open_once``)."""
    data = os.urandom(size)
    blob = write_blob(storage, data)
    pieces = []
    with storage.open_once(blob.key) as handle:
        while piece := handle.read(4 * MiB):
            pieces.append(piece)
    assert b"".join(pieces) == data


def test_a_reader_can_peek_and_go_back_to_the_start(storage):
    """``blob_response`` sniffs the gzip magic, then sends the whole blob."""
    data = b"\x1f\x8b" + os.urandom(100_000)
    blob = write_blob(storage, data)
    with storage.open(blob.key) as handle:
        assert handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        assert handle.read() == data


def test_concurrent_writers_get_their_own_blobs(storage):
    payloads = [os.urandom(200_000 + n * 1000) for n in range(8)]
    results: dict[int, object] = {}

    def write(n: int) -> None:
        results[n] = write_blob(storage, payloads[n], chunk=50_000)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({blob.key for blob in results.values()}) == len(payloads)
    for n, blob in results.items():
        assert read_all(storage, blob.key) == payloads[n]
    assert listed_keys(storage) == {blob.key for blob in results.values()}


def test_delete_removes_the_blob_and_is_idempotent(storage):
    blob = write_blob(storage, b"to be deleted")
    storage.delete(blob.key)
    assert not storage.exists(blob.key)
    assert blob.key not in listed_keys(storage)
    with pytest.raises(BlobNotFound):
        storage.open(blob.key)
    storage.delete(blob.key)  # again: no error


def test_a_missing_key_is_a_clear_error(storage):
    key = new_blob_key("releases")
    assert not storage.exists(key)
    with pytest.raises(BlobNotFound):
        storage.open(key)
    with pytest.raises(BlobNotFound):
        storage.open_once(key)
    with pytest.raises(BlobNotFound):
        storage.size(key)
    assert issubclass(BlobNotFound, FileNotFoundError)


def test_an_interrupted_upload_leaves_nothing(storage):
    writer = storage.writer("submissions")
    for _ in range(12):  # 12 MiB: on S3 two parts are already uploaded
        writer.write(os.urandom(MiB))
    assert pending_uploads(storage) == 1
    writer.discard()
    writer.discard()  # idempotent
    assert pending_uploads(storage) == 0
    assert not storage.exists(writer.key)
    assert listed_keys(storage) == set()


def test_sweep_removes_partial_uploads_a_killed_process_left(storage):
    writer = storage.writer("submissions")  # never committed nor discarded: the process died
    for _ in range(11):  # S3: the second part waits for the first, so one has arrived
        writer.write(os.urandom(MiB))
    kept = write_blob(storage, b"committed")
    assert storage.sweep_partial(3600) == 0  # too recent: may still be streaming
    assert pending_uploads(storage) == 1
    assert storage.sweep_partial(-60) == 1  # a cutoff in the future: every partial is stale
    assert pending_uploads(storage) == 0
    assert storage.exists(kept.key)


def test_listing_gives_every_committed_blob_with_size_and_age(storage):
    blobs = [
        write_blob(storage, os.urandom(n), kind)
        for n, kind in ((10, "releases"), (20, "submissions"), (30, "feedback"))
    ]
    storage.writer("submissions").write(b"partial")  # not listed
    listing = {info.key: info for info in storage.iter_blobs()}
    assert set(listing) == {blob.key for blob in blobs}
    for blob in blobs:
        assert listing[blob.key].size == blob.size
        assert listing[blob.key].modified > 0


def test_check_passes_on_a_writable_store_and_leaves_nothing(storage):
    storage.check()
    storage.check()
    assert listed_keys(storage) == set()
    storage.ensure_room(1024)  # a small write fits
