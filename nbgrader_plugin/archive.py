"""Pack a folder into a tar file, and unpack untrusted tar streams safely."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import unicodedata
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

MAX_MEMBERS = 10_000
CHUNK = 1024 * 1024
MAX_UNPACKED_BYTES = 4 * 1024**3


class Readable(Protocol):
    """What the readers here need of a stream: a file, an HTTP response body, a tar member."""

    def read(self, size: int = -1, /) -> bytes: ...


class UnsafeArchive(ValueError):
    """The archive cannot be unpacked safely: it tried to write outside its folder, holds links,
    devices or clashing names, or cannot be read."""


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

    def __init__(self, source: Readable, progress: Callable[[int], object] | None = None):
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


def _fold(part: str) -> str:
    """Names macOS and Windows store as one (case, Unicode form) share this key."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", part).casefold())


class _Paths:
    """Folded paths seen so far: refuses a second file on one path, or a file/folder clash."""

    def __init__(self) -> None:
        self._root: dict[str, dict | None] = {}  # folder: dict of children; file: None

    def add(self, name: PurePosixPath, is_dir: bool) -> None:
        node = self._root
        parts = name.parts
        for depth, part in enumerate(parts):
            key, last = _fold(part), depth + 1 == len(parts)
            if key not in node:
                node[key] = {} if (is_dir or not last) else None
            elif node[key] is None or (last and not is_dir):
                raise UnsafeArchive(
                    f"refused archive member {str(name)!r}: another member has the same name "
                    "(names that differ only in case or Unicode form are the same on Windows "
                    "and macOS), or a file and a folder share it"
                )
            child = node[key]
            if child is not None:
                node = child


def iter_safe_members(
    archive: tarfile.TarFile, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_UNPACKED_BYTES
):
    """Yield ``(relative_path, tarinfo)`` for each member, refusing anything unsafe.

    Refused (``UnsafeArchive``): links, devices, names outside the folder, two members on one
    path (also after case and Unicode folding), a file where a folder is needed, and archives
    that cannot be read.
    """
    total = 0
    paths = _Paths()
    members = iter(archive)
    count = 0
    while True:
        try:
            info = next(members)
        except StopIteration:
            return
        except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError) as exc:
            raise UnsafeArchive(f"the archive cannot be read ({exc})") from exc
        count += 1
        total += info.size
        if count > max_members or total > max_bytes:
            raise UnsafeArchive("the archive is too large to unpack")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchive(f"refused archive member {info.name!r} (links and devices)")
        name = _safe_name(info.name)
        if name is not None:
            paths.add(name, info.isdir())
            yield name, info


class _Gunzip:
    """A read-only file over a gzip stream of one or more members (``tarfile`` reads only the
    first), decompressed at most ``CHUNK`` bytes per step; zero padding after the end is allowed."""

    def __init__(self, source: Readable, first: bytes) -> None:
        self._source = source
        self._pending = first
        self._inflate = zlib.decompressobj(wbits=31)
        self._buffer = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._done:
            self._buffer = self._step()
        if size is None or size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _step(self) -> bytes:
        inflate = self._inflate
        if inflate.eof:
            rest = inflate.unused_data + self._source.read(2)
            if rest[:2] == b"\x1f\x8b":
                self._inflate, self._pending = zlib.decompressobj(wbits=31), rest
                return b""
            while rest:
                if rest.count(0) != len(rest):
                    raise UnsafeArchive("the archive has unexpected data after its gzip stream")
                rest = self._source.read(CHUNK)
            self._done = True
            return b""
        if inflate.unconsumed_tail:
            data = inflate.unconsumed_tail
        elif self._pending:
            data, self._pending = self._pending, b""
        else:
            data = self._source.read(CHUNK)
        out = inflate.decompress(data, CHUNK)
        if not data and not out and not inflate.eof:
            raise UnsafeArchive("the archive is truncated (its gzip end and checksum are missing)")
        return out


def _open_tar(stream: Readable) -> tarfile.TarFile:
    """A streaming ``TarFile`` over a plain or gzip-compressed tar stream."""
    first = stream.read(2)
    if len(first) == 1:
        first += stream.read(1)
    if first == b"\x1f\x8b":
        source: BinaryIO = _Gunzip(stream, first)  # type: ignore[assignment]
    else:
        source = _Prefixed(stream, first)  # type: ignore[assignment]
    return tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK)


class _Prefixed:
    """``stream`` with ``first`` (already read from it) put back in front."""

    def __init__(self, stream: Readable, first: bytes) -> None:
        self._stream = stream
        self._first = first

    def read(self, size: int = -1) -> bytes:
        if self._first:
            data, self._first = self._first, b""
            if size is None or size < 0:
                return data + self._stream.read()
            return data + self._stream.read(max(0, size - len(data)))
        return self._stream.read(size)


# Errors that mean "this name cannot be written here", not "the disk is full".
_NAME_ERRORS = {
    errno.EINVAL,
    errno.ENAMETOOLONG,
    errno.EILSEQ,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOENT,
}


def extract_stream(
    stream: Readable,
    dest: Path,
    *,
    skip: Callable[[PurePosixPath], bool] | None = None,
) -> list[PurePosixPath]:
    """Unpack a tar stream into ``dest``, a fresh folder (created; if it exists it must be empty).

    Returns the files written. Raises ``UnsafeArchive`` for anything ``iter_safe_members``
    refuses, a member the local file system cannot store, or an archive that cannot be read.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty; unpack into a fresh folder")
    written = []
    try:
        archive = _open_tar(stream)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UnsafeArchive(f"the archive cannot be read ({exc})") from exc
    with archive:
        for name, info in iter_safe_members(archive):
            if skip and skip(name):
                continue
            try:
                _write(archive, info, dest.joinpath(*name.parts))
            except OSError as exc:
                if exc.errno not in _NAME_ERRORS:
                    raise
                raise UnsafeArchive(f"cannot write archive member {str(name)!r} ({exc})") from exc
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise UnsafeArchive(f"the archive cannot be read ({exc})") from exc
            if info.isfile():
                written.append(name)
    return written


def _write(archive: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> None:
    if info.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = archive.extractfile(info)
    assert source is not None
    with open(target, "xb") as out:
        shutil.copyfileobj(source, out, CHUNK)
    os.utime(target, (info.mtime, info.mtime))
