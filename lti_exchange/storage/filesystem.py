"""Blob storage in a local directory: temp file, fsync, rename, so a blob is whole or absent."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO

from lti_exchange.storage.base import HashingCounter, StoredBlob, new_blob_key


class FilesystemBlobWriter:
    def __init__(self, storage: FilesystemStorage, kind: str) -> None:
        self._storage = storage
        self.key = new_blob_key(kind)
        self._tmp_path = storage.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._fh: BinaryIO | None = open(self._tmp_path, "xb")  # noqa: SIM115
        self._counter = HashingCounter()

    def write(self, data: bytes) -> None:
        assert self._fh is not None, "writer already closed"
        self._fh.write(data)
        self._counter.update(data)

    def commit(self) -> StoredBlob:
        assert self._fh is not None, "writer already closed"
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        final = self._storage.path_for(self.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp_path, final)
        _fsync_dir(final.parent)
        return StoredBlob(self.key, self._counter.hexdigest(), self._counter.size)

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._tmp_path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStorage:
    """Blobs under ``root/blobs/<kind>/<xx>/<uuid>``; partial writes under ``root/tmp``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        path = (self.blob_dir / key).resolve()
        if self.blob_dir not in path.parents:
            raise ValueError(f"blob key {key!r} escapes the storage root")
        return path

    def writer(self, kind: str) -> FilesystemBlobWriter:
        return FilesystemBlobWriter(self, kind)

    def open(self, key: str) -> BinaryIO:
        return open(self.path_for(key), "rb")  # noqa: SIM115

    def size(self, key: str) -> int:
        return self.path_for(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def check(self) -> None:
        probe = self.tmp_dir / f"health-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def count_blobs(self) -> int:
        """How many committed blobs exist (for tests and the sweeper)."""
        return sum(1 for p in self.blob_dir.rglob("*") if p.is_file())

    def count_partial(self) -> int:
        return sum(1 for p in self.tmp_dir.iterdir() if p.suffix == ".part")
