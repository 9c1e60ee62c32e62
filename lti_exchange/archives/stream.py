"""Build tar archives as a byte stream straight from stored blobs (no temp files or buffers).

Each stored archive goes out as it is (no re-compression, no re-packing), read in large chunks:
one small piece per member (the previous member's padding and this member's header) and the
blob's bytes as they come from storage.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any

from lti_exchange.storage import BlobStorage

CHUNK = 4 * 1024 * 1024
BLOCK = tarfile.BLOCKSIZE


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def stream_tar(
    manifest: Any | None, members: list[tuple[str, int, str]], storage: BlobStorage
) -> Iterator[bytes]:
    """Yield a tar archive: ``manifest.json`` (when given) then each ``(name, size, blob_key)``."""
    now = time.time()
    pending = b""  # the previous member's padding, sent with the next header
    if manifest is not None:
        data = json.dumps(manifest, indent=1).encode()
        pending = _header("manifest.json", len(data), now) + data + _padding(len(data))
    for name, size, key in members:
        yield pending + _header(name, size, now)
        sent = 0
        with storage.open(key) as handle:
            while sent < size:
                chunk = handle.read(min(CHUNK, size - sent))
                if not chunk:
                    raise OSError(f"blob {key} is shorter than its recorded size {size}")
                sent += len(chunk)
                yield chunk
        pending = _padding(size)
    yield pending + bytes(2 * BLOCK)
