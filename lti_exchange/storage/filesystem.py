"""Blob storage in a local directory: temp file, fsync, rename, so a blob is whole or absent.

Submissions and feedback are written around the page cache where the file system allows it
(``storage.direct_io``): each is read once, later. Releases go through the page cache: every
student of the course reads them, often within minutes.

A full disk (ENOSPC, EDQUOT) or free space below the reserve (``min_free_bytes``) while writing
becomes ``InsufficientStorage`` (507), after the partial file is removed. Partial files that a
killed process left behind are removed by ``sweep_partial`` (run by the worker).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lti_exchange.errors import InsufficientStorage
from lti_exchange.storage.base import (
    BlobInfo,
    BlobNotFound,
    HashingCounter,
    StoredBlob,
    new_blob_key,
)
from lti_exchange.storage.direct_io import DirectFile, DirectReader
from lti_exchange.storage.durable import DIRECTORY_SYNC

log = logging.getLogger(__name__)

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PARTIAL_SUFFIX = ".part"
PROBE_PREFIX = "health-"
CACHED_KINDS = frozenset({"releases"})  # blob kinds written through the page cache
ROOM_CHECK_BYTES = 8 * 1024 * 1024  # free space is checked again after this many bytes written


class FilesystemBlobWriter:
    def __init__(self, storage: FilesystemStorage, kind: str) -> None:
        self._storage = storage
        self.key = new_blob_key(kind)
        self._tmp_path = storage.tmp_dir / f"{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        self._final: Path | None = None
        self._committed = False
        self._counter = HashingCounter()
        self._file: DirectFile | None = None
        self._room_checked_at = -ROOM_CHECK_BYTES  # the first write checks
        with self._cleanup_on_error():
            self._file = DirectFile(str(self._tmp_path), direct=kind not in CACHED_KINDS)

    def write(self, data: bytes) -> None:
        """Append ``data`` (any bytes-like object; nothing of it is kept after the call).

        The free space is checked at the first write and then once per ``ROOM_CHECK_BYTES``
        (a ``statvfs`` per socket read cost more than the check is worth; the reserve is far
        larger than the bytes written between two checks)."""
        assert self._file is not None, "writer already closed"
        with self._cleanup_on_error():
            written = self._counter.size
            if written - self._room_checked_at >= ROOM_CHECK_BYTES:
                self._storage.ensure_room(len(data))
                self._room_checked_at = written
            self._file.write(data)
        self._counter.update(data)

    def commit(self) -> StoredBlob:
        """Make the blob durable and visible: data synced, renamed, directory entry synced."""
        assert self._file is not None, "writer already closed"
        with self._cleanup_on_error():
            self._file.finish()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._final = self._storage.path_for(self.key)
            self._storage.ensure_folder(self._final.parent)
            try:
                os.replace(self._tmp_path, self._final)
            except FileNotFoundError:  # the folder was removed meanwhile (by hand): again
                self._storage.ensure_folder(self._final.parent, known=False)
                os.replace(self._tmp_path, self._final)
            DIRECTORY_SYNC.sync(str(self._final.parent))
        self._committed = True
        return StoredBlob(self.key, self._counter.hexdigest(), self._counter.size)

    def discard(self) -> None:
        """Remove everything this writer wrote (idempotent; a committed blob is kept)."""
        self._counter.close()
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        self._tmp_path.unlink(missing_ok=True)
        if self._final is not None and not self._committed:
            self._final.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _cleanup_on_error(self) -> Iterator[None]:
        """On any failure remove the partial file; report a full disk as ``InsufficientStorage``."""
        try:
            yield
        except BaseException as exc:
            self.discard()
            if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
                log.warning("blob storage %s is full: %s", self._storage.root, exc)
                raise InsufficientStorage() from exc
            raise


class FilesystemStorage:
    """Blobs under ``root/blobs/<kind>/<xx>/<uuid>``; partial writes under ``root/tmp``."""

    open_ahead = 0  # opening a file is local and cheap

    def __init__(self, root: str | Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root).resolve()
        self.blob_dir = self.root / "blobs"
        self._blob_prefix = str(self.blob_dir) + os.sep
        self.tmp_dir = self.root / "tmp"
        self.min_free_bytes = min_free_bytes
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._folders: set[Path] = set()  # blob folders known to exist (made or seen)

    def ensure_folder(self, folder: Path, *, known: bool = True) -> None:
        """Make ``folder`` (and its parents) if needed; a folder made here has its entry in the
        parent folder synced, so the blob renamed into it survives a power cut. Folders already
        seen by this process cost nothing (``known=False`` checks again)."""
        if known and folder in self._folders:
            return
        missing = []
        for candidate in (folder, *folder.parents):
            if candidate == self.blob_dir or candidate.is_dir():
                break
            missing.append(candidate)
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            DIRECTORY_SYNC.sync(str(made.parent))
        self._folders.add(folder)

    def path_for(self, key: str) -> Path:
        """The blob's path; a key that would leave ``blobs/`` is refused. Lexical (no system
        calls: this is on every download's path); keys are the server's own, never a link's."""
        path = os.path.normpath(os.path.join(self._blob_prefix, key))
        if not path.startswith(self._blob_prefix) or "\0" in key:
            raise ValueError(f"blob key {key!r} escapes the storage root")
        return Path(path)

    def writer(self, kind: str) -> FilesystemBlobWriter:
        return FilesystemBlobWriter(self, kind)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path_for(key), "rb")  # noqa: SIM115
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key!r}") from exc

    def open_once(self, key: str) -> BinaryIO:
        """The blob for one reading start to end, around the page cache (``DirectReader``)."""
        try:
            return DirectReader(str(self.path_for(key)))  # type: ignore[return-value]
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key!r}") from exc

    def size(self, key: str) -> int:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key!r}") from exc

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every committed blob under ``blobs/`` (a directory walk, one entry at a time)."""
        for dirpath, _dirs, files in os.walk(self.blob_dir):
            for name in files:
                path = Path(dirpath) / name
                try:
                    info = path.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                key = path.relative_to(self.blob_dir).as_posix()
                yield BlobInfo(key, info.st_size, info.st_mtime)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the storage's file system."""
        usage = os.statvfs(self.tmp_dir)
        return usage.f_bavail * usage.f_frsize

    def ensure_room(self, nbytes: int) -> None:
        free = self.free_bytes()
        if free - nbytes < self.min_free_bytes:
            log.warning(
                "blob storage %s is full: %d bytes free, %d more wanted, %d kept in reserve "
                "(LTI_EXCHANGE_STORAGE_MIN_FREE_BYTES)",
                self.root,
                free,
                nbytes,
                self.min_free_bytes,
            )
            raise InsufficientStorage()

    def check(self) -> None:
        self.ensure_room(0)
        probe = self.tmp_dir / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise InsufficientStorage() from exc
            raise
        finally:
            probe.unlink(missing_ok=True)

    def sweep_partial(self, older_than: float) -> int:
        """Delete ``tmp/*.part`` (and health probes) not modified for ``older_than`` seconds."""
        cutoff = time.time() - older_than
        removed = 0
        with os.scandir(self.tmp_dir) as entries:
            for entry in entries:
                if not (entry.name.endswith(PARTIAL_SUFFIX) or entry.name.startswith(PROBE_PREFIX)):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:  # finished (renamed) or swept by another process
                    continue
                removed += 1
        return removed

    def count_blobs(self) -> int:
        """How many committed blobs exist (for tests and the sweeper)."""
        return sum(1 for p in self.blob_dir.rglob("*") if p.is_file())

    def count_partial(self) -> int:
        return sum(1 for p in self.tmp_dir.iterdir() if p.suffix == PARTIAL_SUFFIX)
