"""A raw stream defined by its ``read`` alone (the request bodies and S3 objects we wrap)."""

from __future__ import annotations

import io
from typing import Any

READ_ALL_CHUNK = 1024 * 1024


class ReadStream(io.RawIOBase):
    """Subclasses give ``read(size)``; ``readall`` and ``readinto`` are built on it."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(READ_ALL_CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
