"""The blob store interface: server-chosen keys, atomic writes, SHA-256 of everything stored."""

from __future__ import annotations

import hashlib
import re
import uuid
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


class HashingCounter:
    """SHA-256 and byte count of a stream, updated chunk by chunk."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
