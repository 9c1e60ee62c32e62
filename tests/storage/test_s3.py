"""What only the S3 backend does: hash metadata, checked reads, settings, error causes."""

from __future__ import annotations

import hashlib
import os

import pytest

from lti_exchange.config import SettingsError, load_settings
from lti_exchange.storage import StorageUnavailable, make_storage
from lti_exchange.storage.s3 import BlobCorrupted, S3Storage
from tests.conftest import S3_ENV
from tests.storage.conftest import S3_PART
from tests.storage.test_contract import write_blob

MiB = 1024**2


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Storage:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return S3Storage(
        s3_server.new_bucket(), "exchange", part_size=S3_PART, endpoint_url=s3_server.endpoint_url
    )


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["put", "multipart"])
def test_the_sha256_is_stored_as_object_metadata(s3, size):
    data = os.urandom(size)
    blob = write_blob(s3, data)
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"exchange/{blob.key}")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_corrupted_object_is_refused_before_its_last_bytes(s3):
    blob = write_blob(s3, b"A" * 3 * MiB)
    s3.client.put_object(  # same length and metadata, other bytes
        Bucket=s3.bucket,
        Key=f"exchange/{blob.key}",
        Body=b"B" * 3 * MiB,
        Metadata={"sha256": blob.sha256},
    )
    received = 0
    with pytest.raises(BlobCorrupted), s3.open(blob.key) as handle:
        while piece := handle.read(MiB):
            received += len(piece)
    assert received < 3 * MiB  # the response would be cut short, not completed


def test_the_storage_url_selects_s3(s3_server, monkeypatch):
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(
        {
            "LTI_EXCHANGE_STORAGE_URL": "s3://my-bucket/some/prefix",
            "LTI_EXCHANGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "LTI_EXCHANGE_S3_PART_SIZE": str(8 * MiB),
        }
    )
    storage = make_storage(settings)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.part_size) == (
        "my-bucket",
        "some/prefix",
        8 * MiB,
    )


def test_a_part_size_below_the_s3_minimum_is_refused():
    with pytest.raises(SettingsError, match="S3_PART_SIZE"):
        load_settings({"LTI_EXCHANGE_S3_PART_SIZE": str(MiB)})


@pytest.mark.parametrize(
    ("break_it", "cause"),
    [
        ("bucket", "bucket_missing"),
        ("endpoint", "endpoint_unreachable"),
    ],
)
def test_check_names_the_cause(s3_server, monkeypatch, break_it, cause):
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    from tests.conftest import free_port

    endpoint = s3_server.endpoint_url
    bucket = s3_server.new_bucket()
    if break_it == "bucket":
        bucket = "no-such-bucket-here"
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage(bucket, "x", endpoint_url=endpoint)
    with pytest.raises(StorageUnavailable) as info:
        storage.check()
    assert info.value.cause == cause
    assert info.value.status == 503 and info.value.code == "storage_unavailable"
    with pytest.raises(StorageUnavailable):  # an upload fails the same way, leaving nothing
        write_blob(storage, b"data")
