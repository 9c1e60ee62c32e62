"""Build tar archives as a byte stream straight from stored blobs (no temp files or buffers)."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any

from lti_exchange.storage import BlobStorage

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    remainder = size % BLOCK
    return b"\0" * (BLOCK - remainder) if remainder else b""


def stream_tar(
    manifest: Any | None, members: list[tuple[str, int, str]], storage: BlobStorage
) -> Iterator[bytes]:
    """Yield a tar archive: ``manifest.json`` (when given) then each ``(name, size, blob_key)``."""
    now = time.time()
    if manifest is not None:
        data = json.dumps(manifest, indent=1).encode()
        yield _header("manifest.json", len(data), now) + data + _padding(len(data))
    for name, size, key in members:
        yield _header(name, size, now)
        sent = 0
        with storage.open(key) as handle:
            while sent < size:
                chunk = handle.read(min(CHUNK, size - sent))
                if not chunk:
                    raise OSError(f"blob {key} is shorter than its recorded size {size}")
                sent += len(chunk)
                yield chunk
        yield _padding(size)
    yield b"\0" * (2 * BLOCK)
