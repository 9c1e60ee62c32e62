"""The blob store interface: server-chosen keys, atomic writes, SHA-256 of everything stored."""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from lti_exchange.errors import ApiError


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob as listed by ``iter_blobs``: its key, size and last write (epoch s)."""

    key: str
    size: int
    modified: float


class BlobNotFound(FileNotFoundError):
    """No blob is stored under this key (both backends raise it from ``open`` and ``size``)."""


class BlobCorrupted(OSError):
    """A stored blob's bytes do not match what was recorded (its SHA-256 or its size)."""


class StorageUnavailable(ApiError, OSError):
    """503: the blob storage did not answer or refused us; nothing was stored.

    ``cause`` is a short machine word (``bucket_missing``, ``credentials_rejected``,
    ``endpoint_unreachable``, ``storage_error``) that ``/readyz`` shows as ``error: <cause>``;
    ``hint`` says what the operator should check. It is an ``OSError`` too, so callers that
    tolerate I/O failures (deleting a blob quietly) treat it like one.
    """

    status, code = 503, "storage_unavailable"

    def __init__(self, cause: str, hint: str, **kwargs: Any) -> None:
        super().__init__(
            "Nothing was stored: the exchange's file storage is not reachable right now. Try "
            "again in a few minutes; if it keeps failing, tell your instructor or the "
            "exchange's operator.",
            **kwargs,
        )
        self.cause = cause
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.cause}: {self.hint}"


BLOB_KEY = re.compile(r"^[a-z][a-z0-9_-]*/[0-9a-f]{2}/[0-9a-f]{32}$")


def is_blob_key(key: str) -> bool:
    """Whether ``key`` has the shape ``new_blob_key`` gives (nothing else is ever swept)."""
    return BLOB_KEY.match(key) is not None


def new_blob_key(kind: str) -> str:
    """A fresh server-chosen key such as ``submissions/3f/3f2a...``; nothing from a request."""
    name = uuid.uuid4().hex
    return f"{kind}/{name[:2]}/{name}"


class BlobWriter(Protocol):
    """Receives a blob in chunks; nothing is visible under ``key`` until ``commit``."""

    key: str

    def write(self, data: bytes) -> None: ...

    def commit(self) -> StoredBlob: ...

    def discard(self) -> None: ...


class BlobStorage(Protocol):
    """Where files live. Implementations: filesystem (default) and S3-compatible object storage."""

    # How many blobs a reader of many (collect, feedback download) opens ahead of the one it
    # sends: 0 where opening is local and cheap, more where each open waits for the network.
    open_ahead: int

    def writer(self, kind: str) -> BlobWriter: ...

    def open(self, key: str) -> BinaryIO: ...

    def open_once(self, key: str) -> BinaryIO:
        """``open`` for a reader that reads the blob once, start to end (collect, feedback):
        the store may read around its caches."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def check(self) -> None:
        """Raise when the store cannot be written to (used by /healthz and /readyz).

        ``InsufficientStorage`` means full: free space is below the reserve, or a write failed
        with ENOSPC/EDQUOT; any other exception means broken.
        """

    def ensure_room(self, nbytes: int) -> None:
        """Raise ``InsufficientStorage`` unless ``nbytes`` more fit above the free-space reserve."""

    def sweep_partial(self, older_than: float) -> int:
        """Delete partial uploads untouched for ``older_than`` seconds; return how many."""

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every committed blob, streamed page by page (never the whole listing in memory)."""
        ...


# Past this many bytes (a large upload: a release, big feedback) the hashing moves to a thread,
# so SHA-256 runs beside receiving and writing instead of after each chunk (hashlib releases
# the GIL). Small uploads (a deadline's submissions) hash in place: no thread, no copy.
BACKGROUND_HASH_AFTER = 8 * 1024 * 1024
_QUEUED_CHUNKS = 4  # chunks waiting for the hashing thread at most (bounded memory)


class _BackgroundHash:
    """Feeds chunks to ``digest`` in order, in a thread of its own."""

    def __init__(self, digest: Any) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._thread = threading.Thread(
            target=self._run, args=(digest, self._chunks), name="blob-sha256", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _run(digest: Any, chunks: queue.Queue[bytes | None]) -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    def put(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def finish(self) -> None:
        """Return once every chunk put so far is hashed; the thread has then ended."""
        self._chunks.put(None)
        self._thread.join()


class HashingCounter:
    """SHA-256 and byte count of a stream, updated chunk by chunk (past
    ``BACKGROUND_HASH_AFTER`` bytes in a thread: ``close`` ends it, ``hexdigest`` waits)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self._background: _BackgroundHash | None = None
        self._stop: weakref.finalize | None = None

    def update(self, data: bytes | memoryview) -> None:
        """Add ``data`` (any bytes-like object; nothing of it is kept after the call)."""
        self.size += len(data)
        if self._background is None:
            if self.size <= BACKGROUND_HASH_AFTER:
                self._hash.update(data)
                return
            self._background = _BackgroundHash(self._hash)
            self._stop = weakref.finalize(self, self._background.finish)  # a dropped counter
        self._background.put(bytes(data))  # the caller may reuse its buffer at once

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Hash what is queued and end the thread, if there is one (idempotent)."""
        if self._stop is not None:
            self._stop()  # runs ``finish`` once
            self._stop = None
            self._background = None
