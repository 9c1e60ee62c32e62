"""Blob storage in an S3-compatible bucket (boto3): ``s3://bucket/prefix``.

- Writes buffer one part (``s3_part_size``, 8 MiB by default) at a time: a blob that fits in one
  part is one PutObject, a larger one a multipart upload whose parts go out from a background
  thread while the next part streams in (``PARTS_IN_FLIGHT`` at once: two parts in memory
  whatever the size; two in flight measured no faster against moto, for 20 MB more memory).
  Nothing is visible under the key until ``commit`` (CompleteMultipartUpload or PutObject);
  ``discard`` aborts the multipart upload, so an upload cut off half-way leaves no object.
  One boto3 client per process, shared by its threads, built at start-up (``warm_up``). A
  PutObject of a whole blob and every GetObject go out as requests signed here
  (``s3_direct``: ~2 ms of CPU less per request than through boto3); anything but a plain
  success is sent again through boto3.
- Every blob's bytes are checked against a SHA-256 kept with the object, without a second
  copy of it: a PutObject carries the whole blob's SHA-256 as metadata (``x-amz-meta-sha256``);
  a multipart upload sends each part's SHA-256 (S3 additional checksums), and the store keeps
  their composite (``ChecksumSHA256`` ``<sha256 of the parts' sha256s>-<parts>``, with the part
  size in ``x-amz-meta-part-size``). A store that does not keep it (or
  ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``) gets the whole SHA-256 as metadata by an
  in-place CopyObject after the upload instead (objects over 5 GiB, beyond CopyObject's limit,
  then keep none and are read unchecked).
- Reads stream the object body in chunks and hash it on the way; the last chunk is only handed
  over after the hash matched, so a corrupted object aborts the response instead of completing
  it (``BlobCorrupted``).
- Every boto error becomes ``StorageUnavailable`` (503) with a cause ``/readyz`` shows.
- Credentials, region and endpoint come from the standard AWS settings (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, profiles, instance
  roles); ``s3_endpoint_url`` / ``s3_region`` in the settings override the endpoint and region.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO

from lti_exchange.read_streams import ReadStream
from lti_exchange.storage.base import (
    BlobCorrupted,
    BlobInfo,
    BlobNotFound,
    HashingCounter,
    StorageUnavailable,
    StoredBlob,
    is_blob_key,
    new_blob_key,
)
from lti_exchange.storage.blob_cache import BlobCache
from lti_exchange.storage.s3_direct import DirectRequestFailed, DirectS3

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024**2  # S3's minimum for every part but the last
COPY_LIMIT = 5 * 1024**3  # the largest object CopyObject can copy in one request
HEAD_KEEP = 64 * 1024  # bytes a reader keeps so a caller may peek and seek back to 0
CACHE_BYTES = 32 * 1024**2  # per process: the release archives most recently fetched
CACHE_MAX_BLOB = 4 * 1024**2  # larger releases stream from S3 each time
PARTS_IN_FLIGHT = 1  # parts of one upload going out at once (memory: this + 1 parts)
MAX_POOL_CONNECTIONS = 32  # per process: every thread's request plus its parts in flight
SHA256_META = "sha256"  # x-amz-meta-sha256: the whole object's SHA-256 (hex)
PART_SIZE_META = "part-size"  # x-amz-meta-part-size: a multipart object's part size
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


def b64_sha256(data: bytes) -> str:
    """The SHA-256 of ``data`` as S3's ``ChecksumSHA256`` writes it (base64)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite_sha256(part_digests: Sequence[bytes]) -> str:
    """S3's composite checksum of a multipart object: the SHA-256 of its parts' SHA-256s."""
    return base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode()


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
        self._parts: dict[int, dict[str, Any]] = {}
        self._upload_id: str | None = None
        self._counter = HashingCounter()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[None]] = deque()
        self._part_count = 0

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
        self._counter.close()
        with contextlib.suppress(Exception):  # its failure is why we are here, or irrelevant now
            self._wait_for_parts(0)
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
        """Upload ``data`` as the next part in the background while the client's next part
        streams in; at most ``PARTS_IN_FLIGHT`` parts go out at once (bounded memory)."""
        self._wait_for_parts(PARTS_IN_FLIGHT - 1)
        storage = self._storage
        if self._upload_id is None:
            extra = {"ChecksumAlgorithm": "SHA256"} if storage.checksums else {}
            started = storage.client.create_multipart_upload(
                Bucket=storage.bucket,
                Key=self._object_key,
                Metadata={PART_SIZE_META: str(storage.part_size)},
                **extra,
            )
            self._upload_id = started["UploadId"]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        self._part_count += 1
        self._in_flight.append(self._pool.submit(self._upload_part, self._part_count, data))

    def _wait_for_parts(self, keep: int) -> None:
        """Wait until at most ``keep`` parts are in flight; a part's failure is raised here."""
        while len(self._in_flight) > keep:
            self._in_flight.popleft().result()

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _upload_part(self, number: int, data: bytes) -> None:
        storage = self._storage
        part: dict[str, Any] = {"PartNumber": number}
        extra = {}
        if storage.checksums:
            part["ChecksumSHA256"] = extra["ChecksumSHA256"] = b64_sha256(data)
        answer = storage.client.upload_part(
            Bucket=storage.bucket,
            Key=self._object_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
            **extra,
        )
        part["ETag"] = answer["ETag"]
        self._parts[number] = part

    def _finish(self, blob: StoredBlob) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        metadata = {SHA256_META: blob.sha256}
        if self._upload_id is None:  # one part at most: one PutObject, hash in its metadata
            self._storage.put_whole(self._object_key, bytes(self._buffer), blob.sha256)
            self._buffer = bytearray()
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer = bytearray()
        self._wait_for_parts(0)
        self._stop_pool()
        parts = [self._parts[number] for number in sorted(self._parts)]
        answer = client.complete_multipart_upload(
            Bucket=bucket,
            Key=self._object_key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._upload_id = None
        if self._storage.checksums and self._store_kept_part_hashes(parts, answer):
            return
        if blob.size > COPY_LIMIT:
            return
        try:  # no part hashes kept: set the hash as metadata by copying the object onto itself
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

    def _store_kept_part_hashes(self, parts: list[dict[str, Any]], answer: dict[str, Any]) -> bool:
        """Whether the store keeps the composite SHA-256 of our parts' SHA-256s (then reads
        check every part and no copy is needed); asked with a HEAD if the answer omits it."""
        expected = composite_sha256([base64.b64decode(p["ChecksumSHA256"]) for p in parts])
        reported = answer.get("ChecksumSHA256")
        if reported is None:
            head = self._storage.client.head_object(
                Bucket=self._storage.bucket, Key=self._object_key, ChecksumMode="ENABLED"
            )
            reported = head.get("ChecksumSHA256")
        return reported is not None and reported.split("-")[0] == expected


class S3BlobReader(ReadStream):
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
        self._check = BodyCheck.for_object(answer)
        self._consumed = 0  # bytes taken from the body
        self._pos = 0  # the caller's position
        self._head = bytearray()
        # the whole body, kept for the process's cache when it is a small release archive
        self._whole = bytearray() if storage.cache.admits(key, self._size) else None

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
        self._check.update(data)
        if self._whole is not None:
            self._whole += data
        keep = len(self._head) == self._consumed and self._consumed + len(data) <= HEAD_KEEP
        self._consumed += len(data)
        if keep:
            self._head += data
        if self._consumed >= self._size:
            self._verify()
            if self._whole is not None:  # every byte read and checked: later reads are local
                self._storage.cache.put(self._key, bytes(self._whole))
                self._whole = None
        return data

    def _verify(self) -> None:
        if not self._check.matches():
            log.error(
                "blob %s does not match its stored SHA-256; refusing its last bytes", self._key
            )
            raise BlobCorrupted(f"blob {self._key} does not match its stored SHA-256")


class BodyCheck:
    """What an object's bytes must hash to: the SHA-256 in its metadata (or a full-object
    ``ChecksumSHA256``), else the composite SHA-256 of its parts (the SHA-256 of the parts'
    SHA-256s, parts of the ``part-size`` in its metadata), else nothing (read unchecked)."""

    def __init__(self, whole: str | None, composite: str | None, part_size: int) -> None:
        self._whole = whole
        self._composite = composite
        self._part_size = part_size
        self._hash = hashlib.sha256()
        self._in_part = 0
        self._part_digests: list[bytes] = []

    @classmethod
    def for_object(cls, answer: dict[str, Any]) -> BodyCheck:
        metadata = answer.get("Metadata") or {}
        checksum = answer.get("ChecksumSHA256") or ""
        whole = metadata.get(SHA256_META)
        if whole is None and checksum and "-" not in checksum:
            whole = base64.b64decode(checksum).hex()
        part_size = metadata.get(PART_SIZE_META, "")
        if whole is None and "-" in checksum and part_size.isdigit() and int(part_size) > 0:
            return cls(None, checksum, int(part_size))
        return cls(whole, None, 0)

    def update(self, data: bytes) -> None:
        if self._composite is None:
            if self._whole is not None:
                self._hash.update(data)
            return
        view = memoryview(data)
        while view:
            take = min(len(view), self._part_size - self._in_part)
            self._hash.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self._part_size:
                self._end_part()

    def _end_part(self) -> None:
        self._part_digests.append(self._hash.digest())
        self._hash = hashlib.sha256()
        self._in_part = 0

    def matches(self) -> bool:
        if self._whole is not None:
            return self._hash.hexdigest() == self._whole
        if self._composite is None:
            return True
        if self._in_part:
            self._end_part()
        digest, _, count = self._composite.partition("-")
        return digest == composite_sha256(self._part_digests) and count == str(
            len(self._part_digests)
        )


class S3Storage:
    """Blobs as objects ``<prefix>/<kind>/<xx>/<uuid>`` in one bucket."""

    # A collect opens this many objects ahead (each open is a GetObject round trip); with the
    # request threads of a worker that stays below the client's MAX_POOL_CONNECTIONS.
    open_ahead = 4

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
        self._clients: dict[int, tuple[Any, DirectS3 | None]] = {}
        self._lock = threading.Lock()
        # release archives that every student fetches: read from S3 once per process
        self.cache = BlobCache(CACHE_BYTES, CACHE_MAX_BLOB)

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
        return self._routes()[0]

    @property
    def direct(self) -> DirectS3 | None:
        """This process's direct route for whole-blob PutObject and GetObject (``s3_direct``),
        or None where only boto3 can go."""
        return self._routes()[1]

    def _routes(self) -> tuple[Any, DirectS3 | None]:
        pid = os.getpid()
        routes = self._clients.get(pid)
        if routes is None:
            with self._lock:
                routes = self._clients.get(pid)
                if routes is None:
                    session, client = self._new_client()
                    direct = DirectS3.for_client(
                        client, session, self.bucket, path_style=bool(self.endpoint_url)
                    )
                    routes = (client, direct)
                    self._clients = {pid: routes}
        return routes

    def warm_up(self) -> None:
        """Build this process's client now (boto3's import and models take ~0.4 s of CPU),
        so a web worker pays it at start-up rather than in its first request."""
        self.client  # noqa: B018 - the property caches the client

    def _new_client(self) -> tuple[Any, Any]:
        """A boto3 session and its S3 client for this process."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            tcp_keepalive=True,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        session = boto3.session.Session()
        client = session.client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region or None,
            config=config,
        )
        return session, client

    @property
    def checksums(self) -> bool:
        """Whether to send SHA-256 checksums with uploads: yes unless the standard AWS setting
        ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` (or ``request_checksum_calculation``
        in the AWS config) says the store does not take them."""
        setting = getattr(self.client.meta.config, "request_checksum_calculation", None)
        return setting != "when_required"

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

    def put_whole(self, object_key: str, body: bytes, sha256_hex: str) -> None:
        """One PutObject of ``body`` with its SHA-256 as metadata (and as the checksum the
        store verifies, where it takes one): directly where it can, else through boto3."""
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        direct = self.direct
        if direct is not None:
            headers = {f"x-amz-meta-{SHA256_META}": sha256_hex}
            if self.checksums:  # as the AWS SDKs send it: the checksum and its algorithm
                headers["x-amz-checksum-sha256"] = checksum
                headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
            try:
                direct.put(object_key, body, sha256_hex, headers)
                return
            except DirectRequestFailed:
                pass  # boto3 sends it again, with its retries and errors
        extra = {"ChecksumSHA256": checksum} if self.checksums else {}
        # with a checksum given, botocore computes no CRC32 of its own
        self.client.put_object(
            Bucket=self.bucket,
            Key=object_key,
            Body=body,
            Metadata={SHA256_META: sha256_hex},
            **extra,
        )

    def _get_object(self, object_key: str) -> dict[str, Any]:
        """GetObject (the stored checksum asked for, where the store keeps them): directly where
        it can, else through boto3."""
        direct = self.direct
        if direct is not None:
            try:
                return direct.get(
                    object_key, {"x-amz-checksum-mode": "ENABLED"} if self.checksums else {}
                )
            except DirectRequestFailed:
                pass  # boto3 sends it again, with its retries and errors
        extra = {"ChecksumMode": "ENABLED"} if self.checksums else {}
        answer: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=object_key, **extra)
        return answer

    def open(self, key: str) -> BinaryIO:
        cached = self.cache.get(key)
        if cached is not None:  # checked against its SHA-256 when it was read from S3
            return io.BytesIO(cached)
        try:
            answer = self._get_object(self.object_key(key))
        except Exception as exc:  # noqa: BLE001 - mapped below
            if is_missing(exc):
                raise BlobNotFound(f"no blob {key!r}") from exc
            raise self.error(exc) from exc
        return S3BlobReader(self, key, answer)  # type: ignore[return-value]  # file-like

    def open_once(self, key: str) -> BinaryIO:
        """The same as ``open``: the host's page cache is not involved in a GetObject."""
        return self.open(key)

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
        self.cache.discard(key)
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
