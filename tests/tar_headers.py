"""Raw tar headers built by hand, for hostile archives ``tarfile`` will not write."""

from __future__ import annotations

MTIME = 1_700_000_000


def header(
    name: bytes,
    *,
    size: int = 0,
    kind: bytes = b"0",
    mtime: bytes | None = None,
    magic: bytes = b"ustar\x0000",
    prefix: bytes = b"",
    size_field: bytes | None = None,
    checksum_delta: int = 0,
) -> bytes:
    """One raw 512-byte tar header (ustar layout), with a correct checksum unless told."""
    block = bytearray(512)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = mtime if mtime is not None else b"%011o\0" % MTIME
    block[156:157] = kind
    block[257:265] = magic
    block[345:500] = prefix[:155].ljust(155, b"\0")
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % (sum(block) + checksum_delta)
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def entry(name: bytes, data: bytes = b"", kind: bytes = b"0", **fields) -> bytes:
    return header(name, size=len(data), kind=kind, **fields) + pad(data)


def record(key: bytes, value: bytes) -> bytes:
    """One PAX record ``"<len> key=value\\n"`` (the length counts itself)."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax(*records: bytes, kind: bytes = b"x") -> bytes:
    body = b"".join(records)
    return header(b"././@PaxHeader", size=len(body), kind=kind) + pad(body)


def long_name(name: bytes) -> bytes:
    return entry(b"././@LongLink", name + b"\0", kind=b"L")


END = bytes(1024)


def tar(*parts: bytes) -> bytes:
    return b"".join(parts) + END
