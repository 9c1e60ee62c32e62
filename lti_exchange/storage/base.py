"""The blob store interface: server-chosen keys, atomic writes, SHA-256 of everything stored."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size: int


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

    def writer(self, kind: str) -> BlobWriter: ...

    def open(self, key: str) -> BinaryIO: ...

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
