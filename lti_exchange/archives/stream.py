"""Build tar archives as a byte stream straight from stored blobs (no temp files or buffers).

Each stored archive goes out as it is (no re-compression, no re-packing), read in large chunks:
one small piece per member (the previous member's padding and this member's header) and the
blob's bytes as they come from storage. A store whose ``open`` waits for the network (S3: a
GetObject per blob) has the next blobs opened ahead (``open_ahead``), so that the round trips
overlap the sending instead of adding up.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

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
    handles = opened(storage, [key for _, _, key in members])
    try:
        for name, size, key in members:
            yield pending + _header(name, size, now)
            yield from _blob(next(handles), key, size)
            pending = _padding(size)
        yield pending + bytes(2 * BLOCK)
    finally:
        handles.close()  # blobs opened ahead and not sent are closed


def _blob(handle: BinaryIO, key: str, size: int) -> Iterator[bytes]:
    sent = 0
    with handle:
        while sent < size:
            chunk = handle.read(min(CHUNK, size - sent))
            if not chunk:
                raise OSError(f"blob {key} is shorter than its recorded size {size}")
            sent += len(chunk)
            yield chunk


def opened(storage: BlobStorage, keys: Iterable[str]) -> Generator[BinaryIO, None, None]:
    """The blobs ``keys`` opened, in order; the caller closes each. With the store's
    ``open_ahead`` above 0, up to that many are being opened in threads ahead of the one
    handed out, and an open that failed raises when its turn comes (as in order). Closing
    the generator closes the handles opened ahead."""
    depth = storage.open_ahead
    if depth <= 0:
        for key in keys:
            yield storage.open_once(key)
        return
    remaining = iter(keys)
    ahead: deque[Future[BinaryIO]] = deque()
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="open-ahead") as pool:
        try:
            for key in remaining:
                ahead.append(pool.submit(storage.open_once, key))
                if len(ahead) >= depth:
                    break
            while ahead:
                handle = ahead.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    ahead.append(pool.submit(storage.open_once, following))
                yield handle
        finally:
            for future in ahead:
                future.cancel()
                if not future.cancelled():
                    with contextlib.suppress(Exception):
                        future.result().close()
