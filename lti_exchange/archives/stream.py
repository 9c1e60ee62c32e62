"""Build tar archives as a byte stream straight from stored blobs (no temp files or buffers).

Each stored archive goes out as it is (no re-compression, no re-packing), read in large chunks:
one small piece per member (the previous member's padding and this member's header) and the
blob's bytes as they come from storage. A store whose ``open`` waits for the network (S3: a
GetObject per blob) has the next blobs opened ahead (``open_ahead``), so that the round trips
overlap the sending instead of adding up.

A blob that is gone from storage (``BlobNotFound``) or damaged (shorter than recorded, or not
matching its SHA-256) does not break the download of the others: a missing one is left out, a
damaged one is sent with zeros in place of what could not be sent (its header already
promised the size), and a last member ``missing.json`` lists both, so the
client can say which were not delivered. The server logs each with its blob key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from lti_exchange.storage import BlobCorrupted, BlobNotFound, BlobStorage

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
UNSENT_MEMBER = "missing.json"
MISSING_MESSAGE = (
    "The exchange no longer has this file: it was deleted or lost outside the exchange. "
    "The exchange's operator can restore it from a backup; otherwise it has to be sent again."
)
DAMAGED_MESSAGE = (
    "This file is damaged in the exchange's storage (it does not match what was stored), so "
    "zeros stand in for its end. The exchange's operator can restore it from a backup; "
    "otherwise it has to be sent again."
)


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def stream_tar(
    manifest: Any | None,
    members: list[tuple[str, int, str]],
    storage: BlobStorage,
    on_sent: Callable[[set[str]], None] | None = None,
) -> Iterator[bytes]:
    """Yield a tar archive: ``manifest.json`` (when given) then each ``(name, size, blob_key)``.

    ``on_sent`` is called with the names of the members not sent whole (``missing.json``'s)
    once the server has taken the last bytes, and not at all if the client went away before.
    """
    now = time.time()
    pending = b""  # the previous member's padding, sent with the next header
    if manifest is not None:
        data = json.dumps(manifest, indent=1).encode()
        pending = _header("manifest.json", len(data), now) + data + _padding(len(data))
    unsent: list[dict[str, str]] = []
    handles = opened(storage, [key for _, _, key in members])
    try:
        for name, size, key in members:
            handle = next(handles)
            if isinstance(handle, BlobNotFound):
                log.error("blob %s of %s is missing from storage; left out", key, name)
                unsent.append({"name": name, "code": "content_missing", "message": MISSING_MESSAGE})
                continue
            with handle:  # closed also when the client goes away at the header
                yield pending + _header(name, size, now)
                damaged = yield from _blob(handle, key, size)
            if damaged:
                unsent.append({"name": name, "code": "content_damaged", "message": DAMAGED_MESSAGE})
            pending = _padding(size)
        if unsent:
            data = json.dumps(unsent, indent=1).encode()
            yield pending + _header(UNSENT_MEMBER, len(data), now)
            pending = data + _padding(len(data))
        yield pending + bytes(2 * BLOCK)
        if on_sent is not None:  # the server asks for more only after sending the end
            on_sent({entry["name"] for entry in unsent})
    finally:
        handles.close()  # blobs opened ahead and not sent are closed


def _blob(handle: BinaryIO, key: str, size: int) -> Generator[bytes, None, bool]:
    """Yield the blob's ``size`` bytes; return whether it was damaged (zeros were sent in
    place of bytes it did not have or that failed their check). Any other failure (storage
    that stopped answering: ``StorageUnavailable``) still breaks the stream, since asking
    again may work."""
    sent = 0
    try:
        while sent < size:
            chunk = handle.read(min(CHUNK, size - sent))
            if not chunk:
                raise BlobCorrupted(f"blob {key} is shorter than its recorded size {size}")
            sent += len(chunk)
            yield chunk
    except BlobCorrupted as exc:
        log.error(
            "blob %s is damaged (%s); zeros sent for its last %d bytes", key, exc, size - sent
        )
        while sent < size:
            zeros = bytes(min(CHUNK, size - sent))
            sent += len(zeros)
            yield zeros
        return True
    return False


def opened(
    storage: BlobStorage, keys: Iterable[str]
) -> Generator[BinaryIO | BlobNotFound, None, None]:
    """The blobs ``keys`` opened, in order; the caller closes each. A blob that is not stored
    comes as its ``BlobNotFound`` (the others still follow); any other failure to open raises
    when its turn comes. With the store's ``open_ahead`` above 0, up to that many are being
    opened in threads ahead of the one handed out. Closing the generator closes the handles
    opened ahead."""
    depth = storage.open_ahead
    if depth <= 0:
        for key in keys:
            yield _open(storage, key)
        return
    remaining = iter(keys)
    ahead: deque[Future[BinaryIO | BlobNotFound]] = deque()
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="open-ahead") as pool:
        try:
            for key in remaining:
                ahead.append(pool.submit(_open, storage, key))
                if len(ahead) >= depth:
                    break
            while ahead:
                handle = ahead.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    ahead.append(pool.submit(_open, storage, following))
                yield handle
        finally:
            for future in ahead:
                future.cancel()
                if not future.cancelled():
                    with contextlib.suppress(Exception):
                        handle = future.result()
                        if not isinstance(handle, BlobNotFound):
                            handle.close()


def _open(storage: BlobStorage, key: str) -> BinaryIO | BlobNotFound:
    try:
        return storage.open_once(key)
    except BlobNotFound as exc:
        return exc
