"""A many-blob download (collect, feedback) when some blobs are gone or damaged in storage:
the others still arrive whole, and ``missing.json`` names what did not."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile

from lti_exchange.archives.stream import UNSENT_MEMBER, stream_tar
from lti_exchange.storage import FilesystemStorage
from tests.storage.test_contract import write_blob

MiB = 1024**2


def damage(storage, blob) -> None:
    """Make ``blob`` shorter on disk, or other bytes with the same SHA-256 metadata on S3."""
    if isinstance(storage, FilesystemStorage):
        os.truncate(storage.path_for(blob.key), blob.size // 2)
        return
    storage.cache.discard(blob.key)
    storage.client.put_object(
        Bucket=storage.bucket,
        Key=storage.object_key(blob.key),
        Body=b"B" * blob.size,
        Metadata={"sha256": blob.sha256},
    )


def unpack(stream) -> dict[str, bytes]:
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


def test_missing_and_damaged_blobs_are_listed_and_the_others_arrive(storage, caplog):
    payloads = [os.urandom(MiB + n) for n in range(6)]
    blobs = [write_blob(storage, data) for data in payloads]
    storage.delete(blobs[1].key)
    damage(storage, blobs[4])
    members = [(f"submissions/{n}.tar", b.size, b.key) for n, b in enumerate(blobs)]

    with caplog.at_level(logging.ERROR, logger="lti_exchange.archives.stream"):
        files = unpack(stream_tar([{"id": 0}], members, storage))

    for n in (0, 2, 3, 5):
        assert files[f"submissions/{n}.tar"] == payloads[n]
    assert "submissions/1.tar" not in files
    damaged = files["submissions/4.tar"]
    assert len(damaged) == blobs[4].size and damaged != payloads[4]
    assert damaged.endswith(bytes(1024))  # zeros stand in for what could not be sent
    unsent = json.loads(files[UNSENT_MEMBER])
    assert [(u["name"], u["code"]) for u in unsent] == [
        ("submissions/1.tar", "content_missing"),
        ("submissions/4.tar", "content_damaged"),
    ]
    assert all("operator" in u["message"] for u in unsent)
    logged = caplog.text
    assert blobs[1].key in logged and blobs[4].key in logged


def test_a_download_with_nothing_wrong_has_no_unsent_member(storage):
    blobs = [write_blob(storage, os.urandom(1000)) for _ in range(3)]
    members = [(f"f/{n}.html", b.size, b.key) for n, b in enumerate(blobs)]
    files = unpack(stream_tar([], members, storage))
    assert sorted(files) == ["f/0.html", "f/1.html", "f/2.html", "manifest.json"]


def test_every_blob_missing_gives_a_valid_archive_listing_them(storage):
    blobs = [write_blob(storage, b"x" * 10) for _ in range(5)]
    for blob in blobs:
        storage.delete(blob.key)
    members = [(f"submissions/{n}.tar", b.size, b.key) for n, b in enumerate(blobs)]
    files = unpack(stream_tar([], members, storage))
    assert sorted(files) == ["manifest.json", UNSENT_MEMBER]
    assert len(json.loads(files[UNSENT_MEMBER])) == 5


def test_on_sent_hears_of_the_unsent_only_after_the_last_bytes(storage):
    blobs = [write_blob(storage, os.urandom(5000)) for _ in range(3)]
    storage.delete(blobs[2].key)
    members = [(f"submissions/{n}.tar", b.size, b.key) for n, b in enumerate(blobs)]
    heard: list[set[str]] = []
    stream = stream_tar([], members, storage, on_sent=heard.append)
    pieces = list(stream)
    assert heard == [{"submissions/2.tar"}]
    assert pieces[-1].endswith(bytes(1024))  # the archive's end went out before


def test_on_sent_is_not_called_when_the_client_goes_away(storage):
    blobs = [write_blob(storage, os.urandom(5000)) for _ in range(3)]
    members = [(f"submissions/{n}.tar", b.size, b.key) for n, b in enumerate(blobs)]
    heard: list[set[str]] = []
    stream = stream_tar([], members, storage, on_sent=heard.append)
    for _ in range(4):
        next(stream)
    stream.close()
    assert heard == []
