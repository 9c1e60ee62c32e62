"""Blob storage in an S3-compatible bucket (boto3): ``s3://bucket/prefix``.

- Writes buffer one part (``s3_part_size``, 8 MiB by default) at a time: a blob that fits in one
  part is one PutObject, a larger one a multipart upload whose parts go out in a background
  thread while the next part streams in (at most two parts in memory), so memory stays constant
  whatever the size. Nothing is visible under the key until ``commit`` (CompleteMultipartUpload
  or PutObject); ``discard`` aborts the multipart upload, so an upload cut off half-way leaves
  no object.
- The SHA-256 of every blob is stored as object metadata (``x-amz-meta-sha256``): with the
  PutObject, or by an in-place CopyObject right after a multipart upload completes (objects
  over 5 GiB, beyond CopyObject's limit, keep no metadata and are read unchecked).
- Reads stream the object body in chunks and hash it on the way; the last chunk is only handed
  over after the hash matched the metadata, so a corrupted object aborts the response instead
  of completing it (``BlobCorrupted``).
- Every boto error becomes ``StorageUnavailable`` (503) with a cause ``/readyz`` shows.
- Credentials, region and endpoint come from the standard AWS settings (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, profiles, instance
  roles); ``s3_endpoint_url`` / ``s3_region`` in the settings override the endpoint and region.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO

from lti_exchange.storage.base import (
    BlobInfo,
    BlobNotFound,
    HashingCounter,
    StorageUnavailable,
    StoredBlob,
    is_blob_key,
    new_blob_key,
)

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024**2  # S3's minimum for every part but the last
COPY_LIMIT = 5 * 1024**3  # the largest object CopyObject can copy in one request
HEAD_KEEP = 64 * 1024  # bytes a reader keeps so a caller may peek and seek back to 0
PROBE_DIR = "_health"
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class BlobCorrupted(OSError):
    """The bytes read do not hash to the SHA-256 stored with the object."""


def storage_error(exc: BaseException, where: str) -> StorageUnavailable:
    """Translate a boto/network failure into ``StorageUnavailable`` with a readable cause."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return StorageUnavailable(
                "bucket_missing", f"the bucket of {where} does not exist: create it or fix the URL"
            )
        if code in CREDENTIAL_CODES:
            return StorageUnavailable(
                "credentials_rejected",
                f"{where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and the bucket's permissions",
            )
        return StorageUnavailable("storage_error", f"{where} answered {code or 'an error'}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageUnavailable(
            "credentials_missing",
            f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, (BotoConnectionError, OSError)):
        return StorageUnavailable(
            "endpoint_unreachable",
            f"{where} cannot be reached ({exc.__class__.__name__}): check AWS_ENDPOINT_URL "
            "and that the S3 service is up",
        )
    return StorageUnavailable(
        "storage_error", f"{where} failed ({exc.__class__.__name__}: {str(exc)[:200]})"
    )


def is_missing(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code", "")) in (
        MISSING_KEY_CODES
    )


class S3BlobWriter:
    """One blob being written: parts go up as they fill; visible only after ``commit``."""

    def __init__(self, storage: S3Storage, kind: str) -> None:
        self._storage = storage
        self.key = new_blob_key(kind)
        self._object_key = storage.object_key(self.key)
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._counter = HashingCounter()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: Future[None] | None = None

    def write(self, data: bytes) -> None:
        assert not self._closed, "writer already closed"
        self._counter.update(data)
        self._buffer += data
        size = self._storage.part_size
        while len(self._buffer) >= size:
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])
            del self._buffer[:size]
            self._guarded(self._send_part, part)

    def commit(self) -> StoredBlob:
        assert not self._closed, "writer already closed"
        blob = StoredBlob(self.key, self._counter.hexdigest(), self._counter.size)
        self._guarded(self._finish, blob)
        self._closed = True
        return blob

    def discard(self) -> None:
        """Abort the multipart upload (idempotent; a committed blob is kept)."""
        if self._closed:
            return
        self._closed = True
        self._buffer = bytearray()
        with contextlib.suppress(Exception):  # its failure is why we are here, or irrelevant now
            self._wait_for_part()
        self._stop_pool()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._storage.client.abort_multipart_upload(
                Bucket=self._storage.bucket, Key=self._object_key, UploadId=upload_id
            )
        except Exception as exc:  # noqa: BLE001 - the partial upload sweep aborts it later
            log.warning("could not abort the upload of %s (swept later): %s", self.key, exc)

    def _guarded(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except BaseException as exc:
            self.discard()
            if isinstance(exc, Exception) and not isinstance(exc, AssertionError):
                raise self._storage.error(exc) from exc
            raise

    def _send_part(self, data: bytes) -> None:
        """Start uploading ``data`` as the next part in the background, after the previous one
        finished: the client's next part streams in while this one goes out (two in memory)."""
        self._wait_for_part()
        client, bucket = self._storage.client, self._storage.bucket
        if self._upload_id is None:
            started = client.create_multipart_upload(Bucket=bucket, Key=self._object_key)
            self._upload_id = started["UploadId"]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        self._in_flight = self._pool.submit(self._upload_part, len(self._parts) + 1, data)

    def _wait_for_part(self) -> None:
        """Wait for the part in flight; its failure is raised here."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            future.result()

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _upload_part(self, number: int, data: bytes) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        answer = client.upload_part(
            Bucket=bucket,
            Key=self._object_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _finish(self, blob: StoredBlob) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        metadata = {"sha256": blob.sha256}
        if self._upload_id is None:
            client.put_object(
                Bucket=bucket, Key=self._object_key, Body=bytes(self._buffer), Metadata=metadata
            )
            self._buffer = bytearray()
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer = bytearray()
        self._wait_for_part()
        self._stop_pool()
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=self._object_key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None
        if blob.size > COPY_LIMIT:
            return
        try:  # the hash is known only now: set it as metadata by copying the object onto itself
            client.copy_object(
                Bucket=bucket,
                Key=self._object_key,
                CopySource={"Bucket": bucket, "Key": self._object_key},
                Metadata=metadata,
                MetadataDirective="REPLACE",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.delete_object(Bucket=bucket, Key=self._object_key)
            raise


class S3BlobReader(io.RawIOBase):
    """An object body read in chunks, hashed as it goes; verified before its last bytes go out.

    The first ``HEAD_KEEP`` bytes are kept so a caller may peek and seek back (``blob_response``
    sniffs the gzip magic); seeking anywhere else is refused. No ``fileno``: servers fall back
    from sendfile to reading.
    """

    def __init__(self, storage: S3Storage, key: str, answer: dict[str, Any]) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._body = answer["Body"]
        self._size = int(answer["ContentLength"])
        self._expected = (answer.get("Metadata") or {}).get("sha256")
        self._hash = hashlib.sha256()
        self._consumed = 0  # bytes taken from the body
        self._pos = 0  # the caller's position
        self._head = bytearray()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("an S3 blob can only seek back into its first bytes")
        if offset != self._pos and not (
            0 <= offset <= self._consumed and len(self._head) == self._consumed
        ):
            raise io.UnsupportedOperation("an S3 blob can only seek back into its first bytes")
        self._pos = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._pos < self._consumed:
            chunk = bytes(self._head[self._pos : self._pos + size])
            self._pos += len(chunk)
            return chunk
        chunk = self._from_body(size)
        self._pos += len(chunk)
        return chunk

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(1024 * 1024):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()

    def _from_body(self, size: int) -> bytes:
        if self._consumed >= self._size:
            self._verify()
            return b""
        try:
            data = self._body.read(min(size, self._size - self._consumed))
        except Exception as exc:  # noqa: BLE001 - urllib3/botocore read errors share no base
            raise self._storage.error(exc) from exc
        if not data:
            raise self._storage.error(
                ConnectionError(f"the object {self._key} ended after {self._consumed} bytes")
            )
        self._hash.update(data)
        keep = len(self._head) == self._consumed and self._consumed + len(data) <= HEAD_KEEP
        self._consumed += len(data)
        if keep:
            self._head += data
        if self._consumed >= self._size:
            self._verify()
        return data

    def _verify(self) -> None:
        if self._expected and self._hash.hexdigest() != self._expected:
            log.error(
                "blob %s does not match its stored SHA-256; refusing its last bytes", self._key
            )
            raise BlobCorrupted(f"blob {self._key} does not match its stored SHA-256")


class S3Storage:
    """Blobs as objects ``<prefix>/<kind>/<xx>/<uuid>`` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = 8 * 1024**2,
        endpoint_url: str = "",
        region: str = "",
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"the S3 part size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self._endpoint_url = endpoint_url
        self.region = region
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        """The configured endpoint, else ``AWS_ENDPOINT_URL`` (read when used), else AWS."""
        return self._endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint_url or 'AWS'}"

    @property
    def client(self) -> Any:
        """One boto3 client per process (never shared across a fork); clients are thread-safe."""
        pid = os.getpid()
        client = self._clients.get(pid)
        if client is None:
            with self._lock:
                client = self._clients.get(pid)
                if client is None:
                    client = self._new_client()
                    self._clients = {pid: client}
        return client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region or None,
            config=config,
        )

    def error(self, exc: BaseException) -> StorageUnavailable:
        unavailable = storage_error(exc, self.where)
        if unavailable is not exc:
            log.warning("S3 storage %s: %s", unavailable.cause, unavailable.hint)
        return unavailable

    def object_key(self, key: str) -> str:
        if not is_blob_key(key):
            raise ValueError(f"blob key {key!r} is not one the server chose")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _list_prefix(self, sub: str = "") -> str:
        return f"{self.prefix}/{sub}" if self.prefix else sub

    def writer(self, kind: str) -> S3BlobWriter:
        return S3BlobWriter(self, kind)

    def open(self, key: str) -> BinaryIO:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:  # noqa: BLE001 - mapped below
            if is_missing(exc):
                raise BlobNotFound(f"no blob {key!r}") from exc
            raise self.error(exc) from exc
        return S3BlobReader(self, key, answer)  # type: ignore[return-value]  # file-like

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=self.object_key(key)
            )
        except Exception as exc:  # noqa: BLE001 - mapped below
            if is_missing(exc):
                return None
            raise self.error(exc) from exc
        return answer

    def size(self, key: str) -> int:
        answer = self._head(key)
        if answer is None:
            raise BlobNotFound(f"no blob {key!r}")
        return int(answer["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise self.error(exc) from exc

    def ensure_room(self, nbytes: int) -> None:
        """No free-space reserve: the object store's capacity is the provider's business."""

    def check(self) -> None:
        """Write and delete a small probe object: the bucket exists, answers and lets us write."""
        probe = self._list_prefix(f"{PROBE_DIR}/{uuid.uuid4().hex}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise self.error(exc) from exc

    def sweep_partial(self, older_than: float) -> int:
        """Abort multipart uploads started over ``older_than`` s ago; delete stale probes."""
        cutoff = time.time() - older_than
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._list_prefix()
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    removed += self._abort_if_stale(upload, cutoff)
            for obj in self._objects(self._list_prefix(f"{PROBE_DIR}/")):
                if _epoch(obj["LastModified"]) <= cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    removed += 1
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise self.error(exc) from exc
        return removed

    def _abort_if_stale(self, upload: dict[str, Any], cutoff: float) -> int:
        from botocore.exceptions import ClientError

        try:
            if self._last_touched(upload) > cutoff:
                return 0
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return 0  # completed or aborted meanwhile
            raise
        return 1

    def _last_touched(self, upload: dict[str, Any]) -> float:
        """When a multipart upload last moved: its newest part, else its start (some servers
        report a fixed ``Initiated``, and a long upload is alive while parts arrive)."""
        latest = _epoch(upload["Initiated"])
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        for page in pages:
            for part in page.get("Parts", []):
                latest = max(latest, _epoch(part["LastModified"]))
        return latest

    def pending_uploads(self) -> int:
        """How many multipart uploads are open under the prefix (for tests and checks)."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._list_prefix()
        )
        return sum(len(page.get("Uploads", [])) for page in pages)

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob object under the prefix, one listing page (1,000 keys) at a time."""
        start = len(self.prefix) + 1 if self.prefix else 0
        try:
            for obj in self._objects(self._list_prefix()):
                key = obj["Key"][start:]
                if is_blob_key(key):
                    yield BlobInfo(key, int(obj["Size"]), _epoch(obj["LastModified"]))
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise self.error(exc) from exc


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
