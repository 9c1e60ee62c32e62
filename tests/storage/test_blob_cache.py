"""The per-process cache of release archives read from S3: served locally after one checked
read, never a blob that failed its check or was read only in part, dropped on delete, bounded."""

from __future__ import annotations

import io
import os

import pytest

from lti_exchange.storage.blob_cache import BlobCache
from lti_exchange.storage.s3 import BlobCorrupted
from tests.storage.test_contract import read_all, write_blob

MiB = 1024**2


def object_gone(s3, key: str) -> None:
    """Remove the object behind the service's back (S3 no longer has it)."""
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(key))


def test_a_release_read_once_is_then_served_without_s3(s3):
    data = os.urandom(300_000)
    blob = write_blob(s3, data, kind="releases")
    assert read_all(s3, blob.key, chunk=64 * 1024) == data
    object_gone(s3, blob.key)
    again = s3.open(blob.key)
    assert isinstance(again, io.BytesIO)
    with again:
        assert again.read(2) == data[:2]  # a peek, then back to the start, as downloads do
        again.seek(0)
        assert again.read() == data


@pytest.mark.parametrize("kind", ["submissions", "feedback"])
def test_only_release_archives_are_kept(s3, kind):
    blob = write_blob(s3, os.urandom(1000), kind=kind)
    read_all(s3, blob.key)
    assert s3.cache.get(blob.key) is None


def test_a_release_read_only_in_part_is_not_kept(s3):
    blob = write_blob(s3, os.urandom(200_000), kind="releases")
    with s3.open(blob.key) as handle:
        handle.read(100_000)
    assert s3.cache.get(blob.key) is None


def test_a_release_that_fails_its_check_is_not_kept(s3):
    blob = write_blob(s3, b"A" * MiB, kind="releases")
    s3.client.put_object(  # same length and metadata, other bytes
        Bucket=s3.bucket,
        Key=s3.object_key(blob.key),
        Body=b"B" * MiB,
        Metadata={"sha256": blob.sha256},
    )
    with pytest.raises(BlobCorrupted):
        read_all(s3, blob.key)
    assert s3.cache.get(blob.key) is None


def test_deleting_a_release_drops_it_from_the_cache(s3):
    blob = write_blob(s3, os.urandom(5000), kind="releases")
    read_all(s3, blob.key)
    assert s3.cache.get(blob.key) is not None
    s3.delete(blob.key)
    assert s3.cache.get(blob.key) is None


def test_the_cache_keeps_the_most_recent_within_its_bytes():
    cache = BlobCache(capacity=10_000, max_blob=4_000)
    for name in "abc":
        cache.put(f"releases/00/{name}", bytes(3_000))
    assert cache.get("releases/00/a") is not None  # a is now the most recently used
    cache.put("releases/00/d", bytes(3_000))  # over 10,000: b (least recent) goes
    assert cache.get("releases/00/b") is None
    assert all(cache.get(f"releases/00/{n}") is not None for n in "acd")
    assert cache.size == 9_000
    cache.put("releases/00/e", bytes(4_001))  # larger than a cached blob may be
    assert cache.get("releases/00/e") is None
    cache.put("releases/00/f", b"")  # nothing to gain
    assert cache.get("releases/00/f") is None
    cache.discard("releases/00/a")
    assert cache.size == 6_000
