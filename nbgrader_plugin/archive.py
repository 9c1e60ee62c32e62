"""Pack a folder into a tar file, and unpack untrusted tar streams safely."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import queue
import stat
import struct
import tarfile
import threading
import time
import unicodedata
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from nbgrader_plugin.portable_names import UnportableNames, unportable_names

CHUNK = 1024 * 1024
PAGE_CACHE_PIECE = 256 * 1024  # the most one write() of an unpacked file hands the kernel
# The most one archive may hold. The exchange caps its settings (LTI_EXCHANGE_MAX_ARCHIVE_MEMBERS,
# LTI_EXCHANGE_MAX_UNPACKED_BYTES) at these values, so every archive it accepts unpacks here.
MAX_MEMBERS = 1_000_000
MAX_UNPACKED_BYTES = 1024**4
BLOCK = tarfile.BLOCKSIZE
# An extended (PAX) header or GNU long name is refused above this, before it is read. Far above
# what the exchange accepts (16 KiB, 4 KiB), so archives older exchanges stored unpack too.
MAX_EXTENSION_BYTES = 1024 * 1024
MAX_MTIME = 253402300799  # 9999-12-31T23:59:59Z; modification times are clamped to 0..this
_EXTENSIONS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_KEYS = (b"path", b"size", b"mtime")  # what the plugin reads; other records are skipped
_ZERO_BLOCK = bytes(BLOCK)
_USTAR = b"ustar\x0000"
_OCTAL_DIGITS = b"01234567"
_SIGNED_BYTES = struct.Struct("148b8x356b")


Chunk = bytes | memoryview  # what a read returns: a memoryview hands data on without a copy


class Readable(Protocol):
    """What the readers here need of a stream: a file, an HTTP response body, a tar member."""

    def read(self, size: int = -1, /) -> Chunk: ...


class UnsafeArchive(ValueError):
    """The archive cannot be unpacked safely: it tried to write outside its folder, holds links,
    devices or clashing names, or cannot be read."""


class PackError(Exception):
    """A file of the folder could not be read, or changed size, while it was being sent."""


class _Member:
    """One member of a packed folder: its tar header, and the file (or bytes) holding its data."""

    __slots__ = ("header", "size", "path", "data")

    def __init__(self, header: bytes, size: int, path: str | None, data: bytes | None) -> None:
        self.header, self.size, self.path, self.data = header, size, path, data


def _header(info: tarfile.TarInfo) -> bytes:
    """The header ``tarfile`` writes for ``info`` in a PAX archive (``TarFile.addfile``)."""
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "strict")


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


class TarPack:
    """A folder as an uncompressed tar, produced while it is read: nothing is written to disk,
    so packing and sending overlap. ``size`` is known in advance (the exact length of the tar
    ``tarfile`` would write for the same files), so it can be sent with a ``Content-Length``.

    File-like: ``read(n)``, ``readinto(buffer)``, ``tell()``, ``seek(0)`` (to send it again),
    ``close()``. Reading a file that shrank, or cannot be read any more, raises ``PackError``.
    """

    def __init__(self, members: list[_Member]) -> None:
        self._members = members
        self.links_left_out: list[str] = []  # symbolic links in the folder, not packed
        self.member_count = len(members)  # as the exchange counts them (files, empty folders)
        self.unpacked_size = sum(m.size for m in members)  # the files' bytes
        body = sum(len(m.header) + m.size + _padding(m.size) for m in members)
        end = body + 2 * tarfile.BLOCKSIZE
        self._trailer = bytes(2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE))
        self.size = body + len(self._trailer)
        self.seek(0)

    # -- file-like ----------------------------------------------------------------------------
    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("a TarPack can only be rewound to its start")
        self.close()
        self._index = -1  # the member being sent
        self._small = memoryview(b"")  # header, padding or trailer bytes not yet sent
        self._file: io.FileIO | None = None
        self._left = 0  # bytes of the current member's data not yet sent
        self._position = 0
        return 0

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytearray:
        """Up to ``size`` bytes (``CHUNK`` when negative); empty at the end (``readinto`` into a
        buffer of the size returned)."""
        want = size if size is not None and size > 0 else CHUNK
        buffer = bytearray(min(want, self.size - self._position))
        count = self.readinto(buffer)
        return buffer if count == len(buffer) else buffer[:count]

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with the next bytes (fewer only at the end); how many.

        Headers and padding are copied in, file data is read straight into it: nothing is
        joined. Joining a header to a file's data copied the data again into a second large
        object, which took fresh pages on each read: 1.1 ms per MiB against 0.08 ms for the
        read alone on a VM whose freed memory goes back to its host (``bench/client_cpu.py``)."""
        total = 0
        with memoryview(buffer) as whole, whole.cast("B") as view:
            while total < len(view):
                room = len(view) - total
                if self._small:
                    count = min(room, len(self._small))
                    view[total : total + count] = self._small[:count]
                    self._small = self._small[count:]
                elif self._left:
                    count = self._read_data(view[total : total + min(room, self._left)])
                elif not self._advance():
                    break
                else:
                    continue
                total += count
        self._position += total
        return total

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()  # type: ignore[union-attr]
            self._file = None

    def __enter__(self) -> TarPack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- producing ----------------------------------------------------------------------------
    def _advance(self) -> bool:
        """Move to the next member (or the trailer); False at the end."""
        member = self._members[self._index] if 0 <= self._index < len(self._members) else None
        self.close()
        pad = _padding(member.size) if member is not None else 0
        self._index += 1
        if self._index > len(self._members):
            return False
        if self._index == len(self._members):
            self._small = memoryview(bytes(pad) + self._trailer)
            return True
        member = self._members[self._index]
        self._small = memoryview(bytes(pad) + member.header)
        self._left = member.size
        if member.data is not None:
            self._small = memoryview(bytes(pad) + member.header + member.data)
            self._left = 0
        elif member.size:
            try:
                self._file = io.FileIO(member.path, "r")  # type: ignore[arg-type]
            except OSError as exc:
                raise PackError(f"cannot read {member.path} ({exc.strerror or exc})") from exc
        return True

    def _read_data(self, target: memoryview) -> int:
        """Fill ``target`` with the current member's next bytes; their count (all of it)."""
        assert self._file is not None
        done = 0
        try:
            while done < len(target):
                count = self._file.readinto(target[done:])
                if not count:  # a short read is not the end; nothing at all is
                    break
                done += count
        except OSError as exc:
            raise PackError(f"cannot read {self._file.name} ({exc.strerror or exc})") from exc
        if done < len(target):
            raise PackError(f"{self._file.name} became shorter while it was being sent")
        self._left -= done
        if not self._left and self._file.read(1):  # longer than when listed: cut short
            raise PackError(f"{self._file.name} grew while it was being sent")
        return done


def _sane_mtime(mtime: float) -> float:
    """A file's modification time as the exchange keeps it: a date before 1970 (some unzip
    tools give one) becomes 1970, one after 9999 becomes 9999. The service refuses an archive
    with such a date, after its upload; nbgrader's default exchange copied it as it was."""
    return min(max(mtime, 0), MAX_MTIME)


def pack_directory(
    source: Path,
    ignore: Callable[[str, list[str]], set[str]] | None = None,
    include: Callable[[Path], bool] | None = None,
    extra: dict[str, bytes] | None = None,
) -> tuple[TarPack, int]:
    """``source`` as an uncompressed tar, produced as it is read (``TarPack``); and its size.

    ``ignore`` has the signature of ``shutil.copytree``'s ignore callable; ``extra`` adds small
    top-level files (name → contents) that are not in the folder. The files are listed and
    their sizes taken now; their contents are read when the pack is read. Symbolic links (to
    files or folders) are not packed: their names are in the pack's ``links_left_out``. Names
    the exchange would refuse (``portable_names``) raise ``UnportableNames``, listing them all,
    first.
    """
    members = []
    names: list[str] = []
    links: list[str] = []
    now = int(time.time())
    for name, data in (extra or {}).items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = now
        info.mode = 0o644
        members.append(_Member(_header(info), len(data), None, data))
    folders: list[tuple[str, os.stat_result]] = []  # every folder walked, for the empty ones
    for dirpath, dirnames, filenames in os.walk(source):
        ignored = ignore(dirpath, dirnames + filenames) if ignore else set()
        dirnames[:] = sorted(d for d in dirnames if d not in ignored)
        rel_dir = PurePosixPath(Path(dirpath).relative_to(source))
        if rel_dir != PurePosixPath("."):
            with contextlib.suppress(FileNotFoundError):
                folders.append((str(rel_dir), os.lstat(dirpath)))
        links.extend(  # os.walk does not go into linked folders
            str(rel_dir / d) for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            if name in ignored:
                continue
            file = os.path.join(dirpath, name)
            try:
                status = os.lstat(file)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(status.st_mode):  # links, devices, sockets
                if stat.S_ISLNK(status.st_mode):
                    links.append(str(rel_dir / name))
                continue
            if include is not None and not include(Path(file)):
                continue
            names.append(str(rel_dir / name))
            info = tarfile.TarInfo(names[-1])
            info.mode = status.st_mode  # as TarFile.gettarinfo (the header keeps 0o7777)
            info.size = status.st_size
            info.mtime = _sane_mtime(status.st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            members.append(_Member(_header(info), status.st_size, file, None))
    # An empty folder is sent as one (nbgrader's default exchange copies it too: a release's
    # empty ``output/`` is where the notebook writes); a folder with files comes with them.
    holding = {str(parent) for name in names for parent in PurePosixPath(name).parents}
    empty = []
    for name, status in reversed(folders):  # a folder's subfolders come before it
        if name not in holding:
            holding.update(str(parent) for parent in PurePosixPath(name).parents)
            empty.append((name, status))
    for name, status in sorted(empty):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = stat.S_IMODE(status.st_mode)
        info.mtime = _sane_mtime(status.st_mtime)
        info.uname = info.gname = ""
        members.append(_Member(_header(info), 0, None, None))
    problems = unportable_names(names, [name for name, _status in empty])
    if problems:
        raise UnportableNames(problems)
    pack = TarPack(members)
    pack.links_left_out = sorted(links)
    return pack, pack.size


# Hash in a background thread once a stream is this large: hashing then overlaps receiving and
# writing (hashlib releases the GIL), which is what lets a fetch go faster than SHA-256 alone.
BACKGROUND_HASH_AFTER = 8 * CHUNK


class _BackgroundHasher:
    """Feeds chunks to ``digest`` in a thread, in order; at most a few chunks wait."""

    def __init__(self, digest: hashlib._Hash) -> None:
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(
            target=self._run, args=(digest, self._queue), name="sha256", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _run(digest: hashlib._Hash, chunks: queue.Queue[Chunk | None]) -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    def put(self, chunk: Chunk) -> None:
        self._queue.put(chunk)

    def finish(self) -> None:
        """Wait until every chunk put so far is hashed; the thread then ends."""
        self._queue.put(None)
        self._thread.join()


class HashingReader:
    """Wraps a stream, computing SHA-256 and calling ``progress(n)`` for every chunk read.

    ``sha256`` is the digest of everything read so far (large streams are hashed in a
    background thread; reading ``sha256`` waits for it).
    """

    def __init__(self, source: Readable, progress: Callable[[int], object] | None = None):
        self._source = source
        self._progress = progress
        self._digest = hashlib.sha256()
        self._hasher: _BackgroundHasher | None = None
        self.size = 0

    @property
    def sha256(self) -> hashlib._Hash:
        self._wait()
        return self._digest

    def _wait(self) -> None:
        """Let the background thread (if any) hash what it has, and end it."""
        if self._hasher is not None:
            self._stop()
            self._hasher = None

    def read(self, size: int = -1) -> Chunk:
        data = self._source.read(size)
        if data:
            self.size += len(data)
            if self._hasher is None and self.size > BACKGROUND_HASH_AFTER:
                self._hasher = _BackgroundHasher(self._digest)
                # a reader dropped half-way (an error) still ends its thread
                self._stop = weakref.finalize(self, self._hasher.finish)
            if self._hasher is not None and _immutable(data):  # safe to hash later
                self._hasher.put(data)
            else:
                self._wait()
                self._digest.update(data)
            if self._progress:
                self._progress(len(data))
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _immutable(data: Chunk) -> bool:
    return type(data) is bytes or (isinstance(data, memoryview) and type(data.obj) is bytes)


def _safe_name(raw: str) -> PurePosixPath | None:
    """``raw`` as a relative path (None for the archive's root folder), or ``UnsafeArchive``."""
    if not raw:
        raise UnsafeArchive("refused an archive member with an empty name")
    if "\x00" in raw or "\\" in raw or raw.startswith("/"):
        raise UnsafeArchive(f"refused archive member {raw!r} (absolute, or a NUL or backslash)")
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
    archive: Iterable[tarfile.TarInfo],
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_UNPACKED_BYTES,
) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo]]:
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
            raise UnsafeArchive(
                f"the archive is too large to unpack (more than {max_members} members or "
                f"{max_bytes} bytes)"
            )
        if info.issparse() or info.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchive(f"refused archive member {info.name!r} (sparse files)")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchive(
                f"refused archive member {info.name!r} (links, devices and other special entries)"
            )
        name = _safe_name(info.name)
        if name is not None:
            paths.add(name, info.isdir())
            yield name, info


class _Gunzip:
    """A read-only file over a gzip stream of one or more members (``tarfile`` reads only the
    first), decompressed at most ``CHUNK`` bytes per step; zero padding after the end is allowed."""

    def __init__(self, source: Readable, first: Chunk) -> None:
        self._source = source
        self._pending = first
        self._inflate = zlib.decompressobj(wbits=31)
        self._buffer = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._done:
            self._buffer = self._step()
        if size is None or size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
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
                rest = bytes(self._source.read(CHUNK))
            self._done = True
            return b""
        data: Chunk
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


def _open_source(stream: Readable) -> Readable:
    """The tar bytes of a plain or gzip-compressed tar stream."""
    first = stream.read(CHUNK)
    while 0 < len(first) < 2:
        more = stream.read(CHUNK)
        if not more:
            break
        first = bytes(first) + more
    if first[:2] == b"\x1f\x8b":
        return _Gunzip(stream, first)
    return _Prefixed(stream, first)


class _Prefixed:
    """``stream`` with ``first`` (already read from it) put back in front."""

    def __init__(self, stream: Readable, first: Chunk) -> None:
        self._stream = stream
        self._first = first

    def read(self, size: int = -1) -> Chunk:
        if self._first:
            data, self._first = self._first, b""
            if size is None or size < 0:
                return bytes(data) + self._stream.read()
            if len(data) > size:
                data, self._first = data[:size], data[size:]
            return data  # a short read: the caller reads again
        return self._stream.read(size)


class TarStream:
    """A forward-only reader of a tar stream, iterated member by member (``TarInfo`` objects, as
    ``tarfile``'s streaming mode gives them). Headers are parsed here, not by ``tarfile`` (whose
    PAX parsing is quadratic on Python 3.11.7): each 512-byte block is checked and read field by
    field, an extended header or long name is bounded (``MAX_EXTENSION_BYTES``) before it is read
    and parsed in one pass, and of its records only ``path``, ``size`` and ``mtime`` are kept.
    A member's data is handed on by ``data(size)`` in the slices it arrived in, never copied; data
    not taken is skipped. The stream may end after a member without its end-of-archive block.
    """

    def __init__(self, source: Readable) -> None:
        self.offset = 0  # where the next header starts
        self._source = source
        self._buffer = memoryview(b"")
        self._position = 0
        self._count = 0

    def _fill(self) -> bool:
        data = self._source.read(CHUNK)
        self._buffer = memoryview(data)
        return bool(data)

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end): headers and their extensions."""
        parts, need = [], size
        while need > 0 and (self._buffer or self._fill()):
            piece = self._buffer[:need]
            self._buffer = self._buffer[len(piece) :]
            parts.append(piece)
            need -= len(piece)
        self._position += size - need
        return b"".join(parts)

    def data(self, size: int) -> Iterator[memoryview]:
        """The next ``size`` bytes, as slices of the chunks they arrived in."""
        while size > 0:
            if not self._buffer and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            piece = self._buffer[:size]
            self._buffer = self._buffer[len(piece) :]
            self._position += len(piece)
            size -= len(piece)
            yield piece

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            for _ in self.data(self.offset - self._position):  # what the caller left unread
                pass
            info = self._next()
            if info is None:
                return
            self._count += 1
            self.offset = self._position + info.size + _padding(info.size)
            yield info

    def _block(self) -> bytes | None:
        """The next header block; None at the end of the archive."""
        block = self._read(BLOCK)
        if not block:
            if self._count == 0:
                raise tarfile.ReadError("empty file")
            return None  # as tarfile: a stream may end without its end-of-archive block
        if len(block) < BLOCK:
            raise tarfile.ReadError("the archive is truncated (a header is cut off)")
        if block == _ZERO_BLOCK:
            return None
        if not _checksum_ok(block):
            raise tarfile.ReadError(f"bad header checksum at byte {self._position - BLOCK}")
        return block

    def _extension(self, size: int) -> bytes:
        """The data of an extended header or long name, bounded before it is read."""
        if size > MAX_EXTENSION_BYTES:
            raise UnsafeArchive(
                f"refused an extended header of {size} bytes (at most {MAX_EXTENSION_BYTES})"
            )
        data = self._read(size)
        if len(data) < size:
            raise tarfile.ReadError("unexpected end of data")
        for _ in self.data(_padding(size)):
            pass
        return data

    def _next(self) -> tarfile.TarInfo | None:
        """The next member with its PAX header or GNU long name applied; None at the end."""
        pax: dict[bytes, bytes] | None = None
        long_name: bytes | None = None
        while (block := self._block()) is not None:
            kind = block[156:157]
            size = _number(block[124:136], "size")
            if size < 0:
                raise tarfile.ReadError(f"a negative size in the header at byte {self._position}")
            if kind not in _EXTENSIONS:
                return _member(block, kind, size, pax, long_name)
            if pax is not None or long_name is not None:
                raise tarfile.ReadError("two extended headers for one member")
            if kind == tarfile.GNUTYPE_LONGLINK:
                raise UnsafeArchive("refused a link (a GNU long link name)")
            data = self._extension(size)
            if kind == tarfile.GNUTYPE_LONGNAME:
                long_name = _nts(data)
            elif kind == tarfile.XHDTYPE:
                pax = _pax_records(data)
            elif {b"path", b"size"} & _pax_records(data).keys():
                raise UnsafeArchive("refused a global PAX header that renames or resizes members")
        if pax is not None or long_name is not None:
            raise tarfile.ReadError("an extended header has no member after it")
        return None


def _nts(field: bytes) -> bytes:
    """A NUL-terminated header field."""
    return field.split(b"\0", 1)[0]


def _number(field: bytes, what: str) -> int:
    """A numeric header field: octal digits, or base-256 (first byte 0x80 or 0xff) as GNU tar
    writes large or negative values."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value if field[0] == 0x80 else value - 256 ** (len(field) - 1)
    digits = _nts(field).strip()
    if digits.translate(None, _OCTAL_DIGITS):
        raise tarfile.ReadError(f"a header's {what} is not a number")
    return int(digits or b"0", 8)


def _checksum_ok(block: bytes) -> bool:
    """Whether the stored checksum is the sum of the header's bytes (unsigned, or signed as some
    old tars sum them), the checksum field counted as spaces."""
    stored = _nts(block[148:156]).strip()
    if not stored or stored.translate(None, _OCTAL_DIGITS):
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    expected = int(stored, 8)
    return expected == unsigned or expected == sum(_SIGNED_BYTES.unpack(block)) + 8 * 0x20


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """The ``path``, ``size`` and ``mtime`` records of a PAX header, in one pass over its
    records ``"<length> <key>=<value>\\n"``. A malformed record, a key set twice or a sparse
    file (``GNU.sparse.*``) is refused."""
    kept: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 24)
        if space < 0 or not data[pos:space].isdigit():
            raise tarfile.ReadError("a PAX extended header is malformed")
        end = pos + int(data[pos:space])
        equals = data.find(b"=", space + 1, end)
        if end > len(data) or equals <= space + 1 or data[end - 1 : end] != b"\n":
            raise tarfile.ReadError("a PAX extended header is malformed")
        key = data[space + 1 : equals]
        if key.startswith(b"GNU.sparse."):
            raise UnsafeArchive("refused a sparse file (GNU.sparse PAX records)")
        if key in _PAX_KEYS:
            if key in kept:
                raise tarfile.ReadError(f"a PAX extended header sets {key.decode()} twice")
            kept[key] = data[equals + 1 : end - 1]
        pos = end
    return kept


def _member(
    block: bytes, kind: bytes, size: int, pax: dict[bytes, bytes] | None, long_name: bytes | None
) -> tarfile.TarInfo:
    """The member a header block describes, with its PAX records or GNU long name applied."""
    raw = _nts(block[0:100])
    if kind == tarfile.AREGTYPE and raw.endswith(b"/"):
        kind = tarfile.DIRTYPE  # an old-style folder entry
    prefix = _nts(block[345:500])
    if prefix and block[257:265] == _USTAR:
        raw = prefix + b"/" + raw
    if long_name is not None:
        raw = long_name
    mtime: float = _number(block[136:148], "modification time")
    if pax:
        raw = pax.get(b"path", raw)
        size = _pax_size(pax.get(b"size"), size)
        mtime = _pax_mtime(pax.get(b"mtime"), mtime)
    info = tarfile.TarInfo(_decode_name(raw))
    info.type, info.size, info.mtime = kind, size, mtime
    if info.isdir() and size:
        raise UnsafeArchive(f"refused archive member {info.name!r} (a folder that holds data)")
    return info


def _pax_size(value: bytes | None, size: int) -> int:
    if value is None:
        return size
    if len(value) > 20 or not value.isdigit():
        raise tarfile.ReadError("a PAX extended header has an invalid size")
    return int(value)


def _pax_mtime(value: bytes | None, mtime: float) -> float:
    """The PAX modification time, if it is a finite number (else the header's, as tarfile)."""
    try:
        parsed = float(value) if value is not None and len(value) <= 64 else mtime
    except ValueError:
        return mtime
    return parsed if math.isfinite(parsed) else mtime


def _decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        raise UnsafeArchive(f"refused archive member {shown!r} (its name is not UTF-8)") from None


UNSENT_MEMBER = "missing.json"  # the exchange's list of files it could not send, if any


def json_list_member(archive: TarStream, info: tarfile.TarInfo, limit: int) -> list[dict]:
    """A small JSON member of a download that lists objects (``manifest.json``,
    ``missing.json``), parsed; anything else in the list is dropped."""
    if info.size > limit:
        raise UnsafeArchive(f"its {info.name} is too large")
    try:
        listed = json.loads(b"".join(archive.data(info.size)))
    except ValueError as exc:
        raise UnsafeArchive(f"its {info.name} is not valid JSON") from exc
    if not isinstance(listed, list):
        raise UnsafeArchive(f"its {info.name} is not a list")
    return [entry for entry in listed if isinstance(entry, dict)]


class MemberReader:
    """One member's data (``TarStream.data``) as a readable stream, without copying it."""

    def __init__(self, pieces: Iterator[memoryview]) -> None:
        self._pieces = pieces
        self._rest = memoryview(b"")

    def read(self, size: int = -1) -> Chunk:
        if not self._rest:
            self._rest = next(self._pieces, memoryview(b""))
        if size is None or size < 0 or size >= len(self._rest):
            data, self._rest = self._rest, memoryview(b"")
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        return data


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
        archive = TarStream(_open_source(stream))
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UnsafeArchive(f"the archive cannot be read ({exc})") from exc
    folders: set[Path] = {dest}
    for name, info in iter_safe_members(archive):
        if skip and skip(name):
            continue
        target = dest.joinpath(*name.parts)
        try:
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
                folders.add(target)
                continue
            if target.parent not in folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target.parent)
            write_file(target, archive.data(info.size), _sane_mtime(info.mtime))
        except OSError as exc:
            if exc.errno not in _NAME_ERRORS:
                raise
            raise UnsafeArchive(f"cannot write archive member {str(name)!r} ({exc})") from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise UnsafeArchive(f"the archive cannot be read ({exc})") from exc
        written.append(name)
    return written


def write_file(target: Path, pieces: Iterable[bytes | memoryview], mtime: float) -> None:
    """Create ``target`` (it must not exist) from ``pieces``, and give it ``mtime``.

    Each ``write`` hands the kernel at most ``PAGE_CACHE_PIECE`` bytes: on a VM that returns
    freed memory to its host, 1 MiB writes fill the page cache 5x slower than 256 KiB ones."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view[:PAGE_CACHE_PIECE]) :]
    finally:
        os.close(fd)
    os.utime(target, (mtime, mtime))
