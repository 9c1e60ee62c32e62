"""A bounded, streaming reader of tar archives (plain or gzip) for untrusted uploads.

Replaces ``tarfile`` for uploads: every length is checked against a bound *before* anything is read
into memory, PAX records are parsed in linear time, gzip output is produced at most ``CHUNK`` bytes
per step (``max_length`` + ``unconsumed_tail``) with a cap on the total, and file data that is only
skipped is never copied. Its reading of names, types and sizes follows ``tarfile``'s and the
nbgrader plugin's own header reader (``nbgrader_plugin.archive.TarStream``), and whatever they
could read differently is refused, so the server never checks a different list of members than
the one the plugin writes (``tests/unit/test_archive_agreement.py`` checks this property).

Refused (``InvalidArchive``): bad checksums, unknown header formats, a missing end-of-archive
block or gzip trailer (truncation), non-zero data after the end block, PAX global headers that
set anything but ``comment``, sparse files, and repeated or combined name extensions. A PAX
header may set only the POSIX keys and vendor metadata keys (``_PAX_VALUE_BYTES``,
``_PAX_VENDOR_PREFIXES``), each value bounded, and hold no run of more than ``MAX_PAX_DIGITS``
digits: older ``tarfile`` readers (CVE-2024-6232) parse such a run in quadratic time.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lti_exchange.errors import InvalidArchive, PayloadTooLarge

CHUNK = 1024 * 1024
BLOCK = 512
MAX_PAX_HEADER = 16 * 1024
MAX_PATH_BYTES = 4096
# The longest run of digits a PAX header may hold: ``tarfile`` before Python 3.11.10 / 3.12.6
# (CVE-2024-6232, the nbgrader plugin's former reader) parses a run of n digits in n² steps.
MAX_PAX_DIGITS = 32
MAX_PAX_VALUE = 4096  # a vendor record's value (SCHILY.xattr.*, LIBARCHIVE.*, RHT.*)
GZIP_MAGIC = b"\x1f\x8b"

_ZERO_BLOCK = bytes(BLOCK)
_ZEROS = memoryview(bytes(CHUNK))
_OCTAL = re.compile(rb"[0-7]*")
_DECIMAL = re.compile(rb"[0-9]+")
_PAX_TIME = re.compile(rb"-?[0-9]+(\.[0-9]+)?")
_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"
_V7_MAGIC = bytes(8)
_SIGNED = struct.Struct("148b8x356b")
_UTF8_CHARSET = "ISO-IR 10646 2000 UTF-8"
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_PAX_DIGITS + 1))
# The POSIX PAX keys an upload may set, and the longest value each may have.
_PAX_VALUE_BYTES = {
    "path": MAX_PATH_BYTES,
    "linkpath": MAX_PATH_BYTES,
    "size": 20,
    "mtime": 32,
    "atime": 32,
    "ctime": 32,
    "uid": 20,
    "gid": 20,
    "uname": 256,
    "gname": 256,
    "hdrcharset": 64,
    "charset": 64,
    "comment": 1024,
}
# Vendor keys (extended attributes, ACLs, flags) that change nothing ``tarfile`` reads.
_PAX_VENDOR_PREFIXES = ("SCHILY.", "LIBARCHIVE.", "RHT.")

# typeflag -> kind (what the caller decides on); ``x``, ``g`` and ``L`` are read here.
KINDS = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",
    b"5": "dir",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "character device",
    b"4": "block device",
    b"6": "fifo",
    b"S": "sparse file",
}

ChunkSource = Callable[[], bytes]


def readinto_of(stream: object) -> Callable[[memoryview], int | None] | None:
    """``stream.readinto`` if the stream really has one (not ``io.RawIOBase``'s abstract one)."""
    if getattr(type(stream), "readinto", None) is io.RawIOBase.readinto:
        return None
    return getattr(stream, "readinto", None)


def truncated(detail: str) -> InvalidArchive:
    return InvalidArchive(
        f"The archive is truncated: {detail}. Nothing was stored; create the archive again "
        "(with tar or nbgrader) and send all of it."
    )


def _all_zero(data: memoryview) -> bool:
    return data == _ZEROS[: len(data)]


# --- bytes in: plain or gzip ---------------------------------------------------------------------


class GzipSource:
    """Decompress gzip members (one or several, concatenated) from ``read`` in bounded steps.

    Each call returns at most ``CHUNK`` bytes; the total is capped at ``limit`` bytes (413).
    zlib checks each member's CRC-32 and length; a member without its trailer is truncation.
    Trailing zero bytes after the last member (block padding) are allowed, anything else is not.
    """

    def __init__(self, first: bytes, read: Callable[[int], bytes], limit: int) -> None:
        self._read = read
        self._limit = limit
        self._pending = first
        self._inflate = zlib.decompressobj(wbits=31)
        self._done = False
        self.total = 0

    def __call__(self) -> bytes:
        try:
            return self._next()
        except zlib.error as exc:
            raise InvalidArchive(
                f"The upload is not a readable gzip-compressed tar archive: the gzip data is "
                f"corrupt ({exc}). Create the archive again and send it."
            ) from exc

    def _next(self) -> bytes:
        while not self._done:
            inflate = self._inflate
            if inflate.eof:
                self._next_member(inflate.unused_data)
                continue
            if inflate.unconsumed_tail:
                data = inflate.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._read(CHUNK)
            out = inflate.decompress(data, CHUNK)
            if not data and not out and not inflate.eof:
                raise truncated("the gzip data ends before its end marker and checksum")
            if out:
                self.total += len(out)
                if self.total > self._limit:
                    raise PayloadTooLarge(
                        f"The archive unpacks to more than {self._limit} bytes of tar data. "
                        "Remove large files (data sets, outputs) from the folder.",
                        code="archive_too_large",
                        details={"limit": self._limit},
                    )
                return out
        return b""

    def _next_member(self, rest: bytes) -> None:
        """After a member's trailer: another member, zero padding, or the end."""
        rest = bytes(rest)
        while len(rest) < 2:
            more = self._read(CHUNK)
            if not more:
                break
            rest += more
        if rest[:2] == GZIP_MAGIC:
            self._inflate = zlib.decompressobj(wbits=31)
            self._pending = rest
            return
        while rest:
            if not _all_zero(memoryview(rest)):
                raise InvalidArchive(
                    "The upload has unexpected data after the end of its gzip stream. Send "
                    "only the archive."
                )
            rest = self._read(CHUNK)
        self._done = True


def open_source(read: Callable[[int], bytes], max_tar_bytes: int) -> tuple[ChunkSource, bool]:
    """``(chunks, gzipped)``: a chunk source of tar bytes from raw upload bytes."""
    first = read(CHUNK)  # (may be a view of the reader's buffer, valid until the next read)
    if 0 < len(first) < 2:
        first = bytes(first)
        while 0 < len(first) < 2:
            more = read(CHUNK)
            if not more:
                break
            first += more
    if first[:2] == GZIP_MAGIC:
        return GzipSource(first, read, max_tar_bytes), True
    pending = [first]

    def chunks() -> bytes:
        return pending.pop() if pending else read(CHUNK)

    return chunks, False


# --- blocks --------------------------------------------------------------------------------------


class BlockStream:
    """The tar byte stream: small reads (headers) are copied, data is skipped or lent in place."""

    def __init__(self, source: ChunkSource) -> None:
        self._source = source
        self._chunk = memoryview(b"")
        self._pos = 0
        self.offset = 0

    def _fill(self) -> bool:
        while self._pos >= len(self._chunk):
            data = self._source()
            if not data:
                return False
            self._chunk, self._pos = memoryview(data), 0
        return True

    def take(self, limit: int) -> memoryview:
        """Up to ``limit`` bytes in place (empty at the end of the stream)."""
        if not self._fill():
            return memoryview(b"")
        piece = self._chunk[self._pos : self._pos + limit]
        self._pos += len(piece)
        self.offset += len(piece)
        return piece

    def read(self, size: int) -> bytes | None:
        """Exactly ``size`` bytes, ``None`` if the stream ends first (at any point)."""
        if self._pos + size <= len(self._chunk):
            data = self._chunk[self._pos : self._pos + size].tobytes()
            self._pos += size
            self.offset += size
            return data
        parts, left = [], size
        while left:
            piece = self.take(left)
            if not piece:
                return None
            parts.append(piece.tobytes())  # the next take may reuse the source's buffer
            left -= len(piece)
        return b"".join(parts)

    def skip(self, size: int) -> bool:
        """Skip ``size`` bytes without copying them; False if the stream ends first."""
        while size:
            piece = self.take(size)
            if not piece:
                return False
            size -= len(piece)
        return True


def padded(size: int) -> int:
    return -size % BLOCK


# --- headers ---------------------------------------------------------------------------------


@dataclass
class TarEntry:
    """One member as ``tarfile`` would list it (name as stored, not yet normalised)."""

    name: str
    kind: str
    size: int
    mtime: float
    offset: int


def _nts(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _number(field: bytes, what: str, where: str) -> int:
    """A numeric header field: octal text, or base-256 (high bit set) as GNU tar writes it."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise InvalidArchive(f"The {what} of the archive member {where} is negative.")
    text = _nts(field).strip()
    if not _OCTAL.fullmatch(text):
        raise InvalidArchive(f"The {what} of the archive member {where} is not a number.")
    return int(text or b"0", 8)


def _checksum_ok(block: bytes) -> bool:
    field = _nts(block[148:156]).strip()
    if not _OCTAL.fullmatch(field) or not field:
        return False
    stored = int(field, 8)
    unsigned = sum(block) - sum(block[148:156]) + 256
    return stored == unsigned or stored == sum(_SIGNED.unpack(block)) + 256


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        raise InvalidArchive(
            f"The archive member name {shown!r} ({where}) is not valid UTF-8. Rename the file "
            "using ordinary characters and submit again."
        ) from None


def parse_pax(data: bytes, where: str) -> dict[str, bytes]:
    """PAX records ``"<len> <key>=<value>\\n"`` in one linear pass; malformed records, unknown
    keys, long values and long runs of digits refuse."""
    if _LONG_DIGITS.search(data):
        raise InvalidArchive(
            f"The extended (PAX) header {where} holds a run of more than {MAX_PAX_DIGITS} "
            "digits, which older tar readers take very long to parse. Rename files whose names "
            "hold such long numbers (or create the archive without extended attributes) and "
            "submit again."
        )
    records: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not _DECIMAL.fullmatch(digits):
            raise InvalidArchive(f"The extended (PAX) header {where} is malformed.")
        length = int(digits)
        stop = pos + length
        if length <= len(digits) + 3 or stop > end or data[stop - 1] != 0x0A:
            raise InvalidArchive(f"The extended (PAX) header {where} is malformed.")
        key, eq, value = data[space + 1 : stop - 1].partition(b"=")
        if not eq or not key:
            raise InvalidArchive(f"The extended (PAX) header {where} is malformed.")
        name = key.decode("utf-8", "replace")
        if name in records:
            raise InvalidArchive(f"The extended (PAX) header {where} sets {name!r} twice.")
        _check_pax_record(name, len(value), where)
        records[name] = value
        pos = stop
    return records


def _check_pax_record(name: str, size: int, where: str) -> None:
    """Refuse sparse files, keys this reader does not know, and values beyond their bound."""
    shown = repr(name[:100])
    if name.startswith("GNU.sparse"):
        raise InvalidArchive(
            f"The archive holds a sparse file {where}; sparse files are refused. "
            "Create the archive without --sparse and submit again."
        )
    bound = _PAX_VALUE_BYTES.get(name)
    if bound is None and name.startswith(_PAX_VENDOR_PREFIXES):
        bound = MAX_PAX_VALUE
    if bound is None:
        raise InvalidArchive(
            f"The extended (PAX) header {where} sets {shown}, which this exchange does not "
            "accept. Create the archive with nbgrader (or tar --format=ustar) and submit again."
        )
    if size > bound:
        raise InvalidArchive(
            f"The extended (PAX) header {where} sets {shown} to {size} bytes; at most {bound} "
            "are allowed. Create the archive without extended attributes (tar --no-xattrs), "
            "use shorter names, and submit again."
        )


class TarReader:
    """Iterate the members of a tar stream; ``data()`` reads the current file's contents.

    The data a caller leaves unread is skipped before the next member. The iteration ends only
    at a valid end-of-archive block followed by nothing but zeros.
    """

    def __init__(self, source: ChunkSource) -> None:
        self._blocks = BlockStream(source)
        self._left = 0  # data of the current member not yet consumed
        self._padding = 0
        self.count = 0
        self._previous = "(the first member)"

    def _where(self) -> str:
        return f"after {self._previous} (byte {self._blocks.offset})"

    def _finish_member(self) -> None:
        if not self._blocks.skip(self._left + self._padding):
            raise truncated(f"the data of {self._previous} is cut off")
        self._left = self._padding = 0

    def __iter__(self) -> Iterator[TarEntry]:
        while True:
            self._finish_member()
            entry = self._next_entry()
            if entry is None:
                return
            self.count += 1
            self._previous = repr(entry.name)
            if entry.kind == "file":
                self._left, self._padding = entry.size, padded(entry.size)
            yield entry

    def read(self, size: int = -1) -> bytes:
        """Read from the current file's data (like a file object)."""
        if size is None or size < 0 or size > self._left:
            size = self._left
        if not size:
            return b""
        data = self._blocks.read(size)
        if data is None:
            raise truncated(f"the data of {self._previous} is cut off")
        self._left -= size
        return data

    def _header(self) -> bytes | None:
        block = self._blocks.read(BLOCK)
        if block is None:
            raise truncated(
                "it ends without the end-of-archive block"
                if self._blocks.offset % BLOCK == 0
                else f"a header is cut off {self._where()}"
            )
        return None if block == _ZERO_BLOCK else block

    def _extension(self, size: int, bound: int, what: str) -> bytes:
        if size > bound:
            raise InvalidArchive(
                f"The archive has a {what} of {size} bytes {self._where()}; at most {bound} are "
                "allowed. Use shorter file and folder names and submit again."
            )
        data = self._blocks.read(size)
        if data is None or not self._blocks.skip(padded(size)):
            raise truncated(f"a {what} is cut off {self._where()}")
        return data

    def _next_entry(self) -> TarEntry | None:
        pax: dict[str, bytes] | None = None
        long_name: bytes | None = None
        while True:
            offset = self._blocks.offset
            block = self._header()
            if block is None:
                if pax is not None or long_name is not None:
                    raise InvalidArchive(
                        f"The archive has a name or extended header with no member {self._where()}."
                    )
                self._check_end()
                return None
            where = self._where()
            if not _checksum_ok(block):
                raise InvalidArchive(
                    f"The archive header at byte {offset} ({self._previous[:200]} came before it) "
                    "has a bad checksum: this is not a tar archive, or it is damaged. Send an "
                    "uncompressed or gzip-compressed tar file."
                    if self.count
                    else "The upload is not a tar archive (its first header has a bad checksum). "
                    "Send an uncompressed or gzip-compressed tar file."
                )
            magic = block[257:265]
            if magic not in (_POSIX_MAGIC, _GNU_MAGIC, _V7_MAGIC):
                raise InvalidArchive(
                    f"The archive header {where} has an unknown format. Create the archive with "
                    "tar or nbgrader and submit again."
                )
            typeflag = block[156:157]
            size = _number(block[124:136], "size", where)
            if typeflag in (b"x", b"g"):
                if pax is not None or long_name is not None:
                    raise InvalidArchive(f"The archive repeats an extended header {where}.")
                records = parse_pax(self._extension(size, MAX_PAX_HEADER, "PAX header"), where)
                if typeflag == b"g":
                    if set(records) - {"comment"}:
                        raise InvalidArchive(
                            f"The archive has a global PAX header {where} that changes every "
                            "member; this is not supported. Create the archive with tar or "
                            "nbgrader and submit again."
                        )
                    continue
                pax = records
                continue
            if typeflag == b"L":
                if pax is not None or long_name is not None:
                    raise InvalidArchive(f"The archive repeats a long-name header {where}.")
                long_name = _nts(self._extension(size, MAX_PATH_BYTES + 1, "long file name"))
                continue
            if typeflag == b"K":
                raise InvalidArchive(
                    f"The archive holds a link {where}; links are refused. Replace it with the "
                    "file itself and submit again."
                )
            return self._entry(block, typeflag, size, pax, long_name, offset)

    def _entry(
        self,
        block: bytes,
        typeflag: bytes,
        size: int,
        pax: dict[str, bytes] | None,
        long_name: bytes | None,
        offset: int,
    ) -> TarEntry:
        header_name = _nts(block[0:100])
        prefix = _nts(block[345:500])
        where = self._where()
        kind = KINDS.get(typeflag, "unsupported entry")
        if typeflag == b"\0" and header_name.endswith(b"/"):
            kind = "dir"  # as tarfile reads it, from the header's own name field
        if prefix and block[257:265] != _POSIX_MAGIC:
            raise InvalidArchive(
                f"The archive header {where} has an unknown format. Create the archive with "
                "tar or nbgrader and submit again."
            )
        raw = header_name if not prefix else prefix + b"/" + header_name
        mtime: float = _number(block[136:148], "modification time", where)
        if long_name is not None:
            raw = long_name
        if pax:
            raw, size, mtime = self._apply_pax(pax, raw, size, mtime, where)
        if len(raw) > MAX_PATH_BYTES:
            raise InvalidArchive(
                f"An archive member name {where} is {len(raw)} bytes long; at most "
                f"{MAX_PATH_BYTES} are allowed. Use shorter names and submit again."
            )
        name = _decode(raw, where)
        if kind == "dir" and size:
            raise InvalidArchive(
                f"The archive folder entry {name!r} claims to hold {size} bytes of data. Create "
                "the archive with tar or nbgrader and submit again."
            )
        return TarEntry(name=name, kind=kind, size=size, mtime=mtime, offset=offset)

    @staticmethod
    def _apply_pax(
        pax: dict[str, bytes], raw: bytes, size: int, mtime: float, where: str
    ) -> tuple[bytes, int, float]:
        charset = pax.get("hdrcharset")
        if charset is not None and charset.decode("utf-8", "replace") != _UTF8_CHARSET:
            raise InvalidArchive(
                f"The archive member names {where} are not UTF-8. Rename the files using "
                "ordinary characters and submit again."
            )
        if "path" in pax:
            raw = pax["path"]
        if "size" in pax:
            if len(pax["size"]) > 20 or not _DECIMAL.fullmatch(pax["size"]):
                raise InvalidArchive(f"The extended (PAX) header {where} has an invalid size.")
            size = int(pax["size"])
        if "mtime" in pax:
            if len(pax["mtime"]) > 32 or not _PAX_TIME.fullmatch(pax["mtime"]):
                raise InvalidArchive(
                    f"The extended (PAX) header {where} has an invalid modification time."
                )
            mtime = float(pax["mtime"])
        return raw, size, mtime

    def _check_end(self) -> None:
        """After the end-of-archive block: only zeros may follow."""
        while True:
            piece = self._blocks.take(CHUNK)
            if not piece:
                return
            if not _all_zero(piece):
                raise InvalidArchive(
                    f"The upload has unexpected data after the end of the tar archive (byte "
                    f"{self._blocks.offset - len(piece)}). Send only the archive."
                )
