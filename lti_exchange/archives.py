"""Receive an uploaded tar archive in one streamed pass: store it, hash it, and check every member.

An archive is hostile until checked: no absolute paths, no ``..``, no links or devices, a bounded
number of members and a bounded unpacked size. Nothing is published unless every check passes.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from lti_exchange.errors import InvalidArchive, InvalidRequest, PayloadTooLarge
from lti_exchange.storage import BlobStorage, StoredBlob

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    max_upload_bytes: int
    max_unpacked_bytes: int
    max_members: int


@dataclass
class ArchiveMember:
    name: str
    size: int
    is_dir: bool


@dataclass
class ArchiveManifest:
    """What a checked archive holds."""

    members: list[ArchiveMember] = field(default_factory=list)
    unpacked_size: int = 0

    @property
    def notebooks(self) -> list[str]:
        """Stems of the top-level ``*.ipynb`` files, sorted (what nbgrader calls notebook ids)."""
        return sorted(
            m.name[: -len(".ipynb")]
            for m in self.members
            if not m.is_dir and "/" not in m.name and m.name.endswith(".ipynb")
        )


class _TeeReader:
    """Reads the request body, copying every byte to the blob writer and enforcing the size cap."""

    def __init__(self, source: BinaryIO, sink: Callable[[bytes], None], limit: int) -> None:
        self._source = source
        self._sink = sink
        self._limit = limit
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(CHUNK if size is None or size < 0 else size)
        if data:
            self.total += len(data)
            if self.total > self._limit:
                raise PayloadTooLarge(
                    f"The upload is larger than the limit of {self._limit} bytes. Remove large "
                    "files (data sets, outputs) from the folder, or ask your operator to raise "
                    "LTI_EXCHANGE_MAX_UPLOAD_BYTES.",
                    details={"limit": self._limit},
                )
            self._sink(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def normalise_member_name(raw: str) -> str:
    """Return a safe relative POSIX name, or raise ``InvalidArchive``."""
    if not raw or "\x00" in raw or "\\" in raw or any(ord(c) < 32 for c in raw):
        raise InvalidArchive(f"Archive member name {raw!r} contains forbidden characters.")
    if raw.startswith("/"):
        raise InvalidArchive(f"Archive member {raw!r} has an absolute path.")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArchive(f"Archive member {raw!r} points outside the archive ('..').")
    return posixpath.join(*parts) if parts else ""


OnFile = Callable[[str, BinaryIO, int], None]


def scan_archive(
    stream: BinaryIO,
    limits: ArchiveLimits,
    *,
    sink: Callable[[bytes], None] | None = None,
    on_file: OnFile | None = None,
) -> ArchiveManifest:
    """Read ``stream`` to its end as a tar archive, checking every member.

    ``sink`` receives every raw byte (to store the archive as it arrives); ``on_file(name, fh,
    size)`` is called for each regular file with its contents. Raises ``ApiError`` on bad input.
    """
    reader = _TeeReader(stream, sink or (lambda _data: None), limits.max_upload_bytes)
    try:
        manifest = _inspect(reader, limits, on_file)
        reader.drain()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise InvalidArchive(
            f"The upload is not a readable tar archive ({exc.__class__.__name__}: {exc}). "
            "Send an uncompressed or gzip-compressed tar file."
        ) from exc
    if reader.total == 0:
        raise InvalidRequest("The upload is empty; send a tar archive as the request body.")
    return manifest


def store_archive(
    stream: BinaryIO, storage: BlobStorage, kind: str, limits: ArchiveLimits
) -> tuple[StoredBlob, ArchiveManifest]:
    """Store ``stream`` as one blob while checking it; on any failure nothing is left behind."""
    writer = storage.writer(kind)
    try:
        manifest = scan_archive(stream, limits, sink=writer.write)
        blob = writer.commit()
    except BaseException:
        writer.discard()
        raise
    return blob, manifest


def _inspect(reader: _TeeReader, limits: ArchiveLimits, on_file: OnFile | None) -> ArchiveManifest:
    manifest = ArchiveManifest()
    # bufsize: read the body in 1 MiB pieces rather than tarfile's default 10 KiB.
    with tarfile.open(fileobj=reader, mode="r|*", bufsize=CHUNK) as archive:  # type: ignore[call-overload]
        for info in archive:
            name = normalise_member_name(info.name)
            if info.issym() or info.islnk():
                raise InvalidArchive(f"Archive member {info.name!r} is a link; links are refused.")
            if not (info.isfile() or info.isdir()):
                raise InvalidArchive(
                    f"Archive member {info.name!r} is not a regular file or directory."
                )
            if len(manifest.members) + 1 > limits.max_members:
                raise PayloadTooLarge(
                    f"The archive has more than {limits.max_members} members. Remove generated "
                    "files (caches, checkpoints, data) from the folder.",
                    code="archive_too_many_members",
                    details={"limit": limits.max_members},
                )
            manifest.unpacked_size += info.size
            if manifest.unpacked_size > limits.max_unpacked_bytes:
                raise PayloadTooLarge(
                    f"The archive unpacks to more than {limits.max_unpacked_bytes} bytes.",
                    code="archive_too_large",
                    details={"limit": limits.max_unpacked_bytes},
                )
            if not name:
                continue
            manifest.members.append(ArchiveMember(name=name, size=info.size, is_dir=info.isdir()))
            if info.isfile() and on_file is not None:
                extracted = archive.extractfile(info)
                assert extracted is not None
                on_file(name, extracted, info.size)
    return manifest
