"""Pack a folder into a tar file, and unpack untrusted tar streams safely."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_MEMBERS = 10_000
CHUNK = 1024 * 1024
MAX_UNPACKED_BYTES = 4 * 1024**3


class UnsafeArchive(ValueError):
    """The archive tried to write outside its folder, or holds links or devices."""


def pack_directory(
    source: Path,
    ignore: Callable[[str, list[str]], set[str]] | None = None,
    include: Callable[[Path], bool] | None = None,
    extra: dict[str, bytes] | None = None,
) -> tuple[BinaryIO, int]:
    """Write ``source`` as an uncompressed tar into a temp file; return it (at 0) and its size.

    ``ignore`` has the signature of ``shutil.copytree``'s ignore callable; ``extra`` adds small
    top-level files (name → contents) that are not in the folder.
    """
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for dirpath, dirnames, filenames in os.walk(source):
            ignored = ignore(dirpath, dirnames + filenames) if ignore else set()
            dirnames[:] = sorted(d for d in dirnames if d not in ignored)
            rel_dir = Path(dirpath).relative_to(source)
            for name in sorted(filenames):
                if name in ignored:
                    continue
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                if include is not None and not include(path):
                    continue
                info = archive.gettarinfo(str(path), arcname=str(PurePosixPath(rel_dir, name)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as fh:
                    archive.addfile(info, fh)
    size = handle.tell()
    handle.seek(0)
    return handle, size


class HashingReader:
    """Wraps a stream, computing SHA-256 and calling ``progress(n)`` for every chunk read."""

    def __init__(self, source: BinaryIO, progress: Callable[[int], object] | None = None):
        self._source = source
        self._progress = progress
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self.sha256.update(data)
            self.size += len(data)
            if self._progress:
                self._progress(len(data))
        return data

    def drain(self) -> None:
        while self.read(1024 * 1024):
            pass


def _safe_name(raw: str) -> PurePosixPath | None:
    if not raw or "\x00" in raw or "\\" in raw or raw.startswith("/"):
        raise UnsafeArchive(f"refused archive member {raw!r}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"refused archive member {raw!r} (points outside the folder)")
    return PurePosixPath(*parts) if parts else None


def iter_safe_members(
    archive: tarfile.TarFile, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_UNPACKED_BYTES
):
    """Yield ``(relative_path, tarinfo)`` for each member, refusing anything unsafe."""
    total = 0
    for count, info in enumerate(archive, start=1):
        total += info.size
        if count > max_members or total > max_bytes:
            raise UnsafeArchive("the archive is too large to unpack")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchive(f"refused archive member {info.name!r} (links and devices)")
        name = _safe_name(info.name)
        if name is not None:
            yield name, info


def extract_stream(
    stream: BinaryIO,
    dest: Path,
    *,
    skip: Callable[[PurePosixPath], bool] | None = None,
) -> list[PurePosixPath]:
    """Unpack a tar stream into ``dest`` (created), returning the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=stream, mode="r|*", bufsize=CHUNK) as archive:
        for name, info in iter_safe_members(archive):
            if skip and skip(name):
                continue
            target = dest.joinpath(*name.parts)
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(info)
            assert source is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
            os.utime(target, (info.mtime, info.mtime))
            written.append(name)
    return written
