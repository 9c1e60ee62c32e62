"""Many blobs read in one go (collect, feedback downloads): in order, every byte, the blobs
opened ahead by stores that ask for it (S3), and nothing left open when the reader stops."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading

import pytest

from lti_exchange.archives.stream import opened, stream_tar
from lti_exchange.storage import new_blob_key
from tests.storage.test_contract import write_blob
from tests.storage.test_stream_unsent import unpack


class CountingStore:
    """The real store under test, counting the handles it opened and those closed, and how
    many opens ran at once; ``open_ahead`` as asked."""

    def __init__(self, storage, open_ahead: int) -> None:
        self.storage = storage
        self.open_ahead = open_ahead
        self.opened: list = []
        self.running = self.most_running = 0
        self._lock = threading.Lock()

    def open_once(self, key: str):
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            handle = self.storage.open_once(key)
        finally:
            with self._lock:
                self.running -= 1
        self.opened.append(handle)
        return handle

    def still_open(self) -> int:
        return sum(not handle.closed for handle in self.opened)


def test_the_stores_ask_to_open_ahead_only_where_opening_waits_for_the_network(storage):
    expected = 0 if type(storage).__name__ == "FilesystemStorage" else 4
    assert storage.open_ahead == expected


@pytest.mark.parametrize("ahead", [0, 3])
def test_a_tar_of_many_blobs_has_each_in_order_with_every_byte(storage, ahead):
    contents = [os.urandom(size) for size in (0, 1, 511, 512, 513, 70_000, 3, 1024, 9)]
    keys = [write_blob(storage, data).key for data in contents]
    store = CountingStore(storage, ahead)
    pairs = enumerate(zip(contents, keys, strict=True))
    members = [(f"{i}.tar", len(data), key) for i, (data, key) in pairs]
    body = b"".join(stream_tar({"count": len(members)}, members, store))
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
        assert names == ["manifest.json"] + [name for name, _, _ in members]
        assert json.loads(archive.extractfile("manifest.json").read()) == {"count": 9}
        for (name, _, _), data in zip(members, contents, strict=True):
            assert archive.extractfile(name).read() == data
    assert len(store.opened) == len(keys)
    assert store.still_open() == 0


def test_opens_run_ahead_in_parallel_but_never_more_than_asked(storage):
    keys = [write_blob(storage, os.urandom(1000)).key for _ in range(12)]
    store = CountingStore(storage, 3)
    handles = opened(store, keys)
    for handle in handles:
        with handle:
            assert handle.read() is not None
    assert len(store.opened) == 12
    assert 1 <= store.most_running <= 3
    assert store.still_open() == 0


def test_a_reader_that_stops_half_way_leaves_no_blob_open(storage):
    keys = [write_blob(storage, os.urandom(2000)).key for _ in range(10)]
    store = CountingStore(storage, 4)
    members = [(f"{i}.tar", 2000, key) for i, key in enumerate(keys)]
    stream = stream_tar(None, members, store)
    for _ in range(5):  # header, bytes, header, bytes, header: the client went away here
        next(stream)
    stream.close()
    assert 3 <= len(store.opened) <= 7  # the ones sent or being sent, and up to 4 ahead
    assert store.still_open() == 0


@pytest.mark.parametrize("ahead", [0, 3])
def test_a_missing_blob_is_left_out_and_the_ones_after_it_still_go(storage, ahead):
    data = [os.urandom(700) for _ in range(5)]
    keys = [write_blob(storage, d).key for d in data]
    keys[3] = new_blob_key("submissions")  # its row outlived its blob
    store = CountingStore(storage, ahead)
    members = [(f"{i}.tar", 700, key) for i, key in enumerate(keys)]
    files = unpack(stream_tar(None, members, store))
    assert [files[f"{i}.tar"] for i in (0, 1, 2, 4)] == [data[i] for i in (0, 1, 2, 4)]
    assert [u["name"] for u in json.loads(files["missing.json"])] == ["3.tar"]
    assert store.still_open() == 0
