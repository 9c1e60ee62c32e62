"""What only the S3 backend does: hashes kept with the objects (metadata, part checksums),
checked reads, settings, error causes."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from lti_exchange.config import SettingsError, load_settings
from lti_exchange.storage import StorageUnavailable, make_storage
from lti_exchange.storage.s3 import BlobCorrupted, BodyCheck, S3Storage
from tests.conftest import S3_ENV
from tests.storage.conftest import S3_PART
from tests.storage.test_contract import read_all, write_blob

MiB = 1024**2


def test_a_small_blob_is_one_put_with_its_sha256_as_metadata(s3):
    data = os.urandom(1000)
    blob = write_blob(s3, data)
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"exchange/{blob.key}")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "-" not in head["ETag"]  # a PutObject, not a multipart upload


def composite(data: bytes, part: int) -> str:
    digests = b"".join(
        hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part)
    )
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def test_a_large_blob_keeps_its_parts_sha256_and_is_never_copied(s3, monkeypatch):
    copies = []
    real_copy = s3.client.copy_object
    monkeypatch.setattr(s3.client, "copy_object", lambda **kw: copies.append(kw) or real_copy(**kw))
    data = os.urandom(12 * MiB)  # parts of 5, 5 and 2 MiB
    blob = write_blob(s3, data)
    head = s3.client.head_object(
        Bucket=s3.bucket, Key=f"exchange/{blob.key}", ChecksumMode="ENABLED"
    )
    assert head["Metadata"] == {"part-size": str(S3_PART)}
    assert head["ChecksumSHA256"].split("-")[0] == composite(data, S3_PART)
    assert copies == []  # the hash is kept without a second copy of the object
    assert read_all(s3, blob.key) == data


def test_a_store_without_checksums_gets_the_sha256_by_a_copy(s3_server, monkeypatch):
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    storage = S3Storage(
        s3_server.new_bucket(), "exchange", part_size=S3_PART, endpoint_url=s3_server.endpoint_url
    )
    assert not storage.checksums
    data = os.urandom(12 * MiB)
    blob = write_blob(storage, data)
    head = storage.client.head_object(Bucket=storage.bucket, Key=f"exchange/{blob.key}")
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert read_all(storage, blob.key) == data


def read_until_refused(storage, key: str) -> int:
    received = 0
    with pytest.raises(BlobCorrupted), storage.open(key) as handle:
        while piece := handle.read(MiB):
            received += len(piece)
    return received


def test_a_corrupted_object_is_refused_before_its_last_bytes(s3):
    blob = write_blob(s3, b"A" * 3 * MiB)
    s3.client.put_object(  # same length and metadata, other bytes
        Bucket=s3.bucket,
        Key=f"exchange/{blob.key}",
        Body=b"B" * 3 * MiB,
        Metadata={"sha256": blob.sha256},
    )
    assert read_until_refused(s3, blob.key) < 3 * MiB  # the response is cut short


def test_a_multipart_object_that_does_not_match_its_part_hashes_is_refused(s3):
    """Bytes that do not hash to the composite SHA-256 as the reader splits them (here: the
    part size in the metadata is not the one the parts were cut at)."""
    key = f"exchange/{write_blob(s3, b'placeholder').key}"
    data = os.urandom(12 * MiB)
    upload = s3.client.create_multipart_upload(
        Bucket=s3.bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata={"part-size": str(S3_PART)}
    )
    parts, cut = [], 6 * MiB
    for number, start in enumerate(range(0, len(data), cut), 1):
        answer = s3.client.upload_part(
            Bucket=s3.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + cut],
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumSHA256": answer["ChecksumSHA256"],
            }
        )
    s3.client.complete_multipart_upload(
        Bucket=s3.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert read_until_refused(s3, key.removeprefix("exchange/")) < len(data)


def test_the_part_check_finds_one_changed_byte():
    data = bytearray(os.urandom(3 * 1000 + 17))
    answer = {
        "Metadata": {"part-size": "1000"},
        "ChecksumSHA256": composite(bytes(data), 1000) + "-4",
    }
    check = BodyCheck.for_object(answer)
    check.update(bytes(data[:1500]))
    check.update(bytes(data[1500:]))
    assert check.matches()
    data[2500] ^= 1
    check = BodyCheck.for_object(answer)
    check.update(bytes(data))
    assert not check.matches()


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
