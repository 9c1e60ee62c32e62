"""A small per-process cache of whole blobs that many requests read (release archives), for
stores where each read is a network round trip (S3). Blobs never change once written (their
keys are new uuids), so a cached copy is never stale; a delete drops it."""

from __future__ import annotations

import threading
from collections import OrderedDict

RELEASES = "releases/"  # every student fetches the same release: worth keeping


class BlobCache:
    """Least recently used first out, at most ``capacity`` bytes, blobs of at most
    ``max_blob`` bytes; only release archives. Safe to use from several threads."""

    def __init__(self, capacity: int, max_blob: int) -> None:
        self.capacity = capacity
        self.max_blob = min(max_blob, capacity)
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def admits(self, key: str, size: int) -> bool:
        """Whether a blob of ``size`` bytes under ``key`` would be kept."""
        return key.startswith(RELEASES) and 0 < size <= self.max_blob

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._blobs.get(key)
            if data is not None:
                self._blobs.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if not self.admits(key, len(data)):
            return
        with self._lock:
            self._forget(key)
            self._blobs[key] = data
            self._size += len(data)
            while self._size > self.capacity:
                _, dropped = self._blobs.popitem(last=False)
                self._size -= len(dropped)

    def discard(self, key: str) -> None:
        with self._lock:
            self._forget(key)

    def _forget(self, key: str) -> None:
        """Drop ``key`` if kept (the caller holds the lock)."""
        old = self._blobs.pop(key, None)
        if old is not None:
            self._size -= len(old)

    @property
    def size(self) -> int:
        return self._size
