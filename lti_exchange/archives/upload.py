"""Receive an uploaded tar archive in one streamed pass: store it, hash it, and check every member.

An archive is hostile until checked. It is parsed by our own bounded reader
(``archives.reader``, never ``tarfile``); every member must be a regular file or a folder
with a name that unpacks the same way on Linux, macOS and Windows (``archives.names``:
no absolute paths, no ``..``, no duplicates or file/folder clashes, even after case and Unicode
folding), a sane modification time, a bounded number of members and a bounded unpacked size.
Nothing is published unless every check passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from lti_exchange.archives.ceilings import MAX_MEMBERS_CEILING, MAX_UNPACKED_CEILING
from lti_exchange.archives.names import NameTree, normalise_member_name
from lti_exchange.archives.reader import (
    BLOCK,
    CHUNK,
    MAX_PATH_BYTES,
    MAX_PAX_HEADER,
    TarEntry,
    TarReader,
    open_source,
    readinto_of,
)
from lti_exchange.errors import InvalidArchive, InvalidRequest, PayloadTooLarge
from lti_exchange.storage import BlobStorage, StoredBlob

__all__ = [
    "ArchiveLimits",
    "ArchiveManifest",
    "ArchiveMember",
    "normalise_member_name",
    "refuse_declared",
    "scan_archive",
    "store_archive",
]

MAX_MTIME = 253402300799  # 9999-12-31T23:59:59Z
# Header bytes one member may take besides its data: header, PAX header, long name, padding.
MEMBER_OVERHEAD = 4 * BLOCK + MAX_PAX_HEADER + MAX_PATH_BYTES


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on one archive; members and unpacked bytes are capped at the plugin's ceilings."""

    max_upload_bytes: int
    max_unpacked_bytes: int
    max_members: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_members", min(self.max_members, MAX_MEMBERS_CEILING))
        unpacked = min(self.max_unpacked_bytes, MAX_UNPACKED_CEILING)
        object.__setattr__(self, "max_unpacked_bytes", unpacked)


# What to remove, by what was sent: a student's or instructor's folder, or many students' feedback.
_FOLDER_REMEDY = (
    "Remove generated files (caches, checkpoints, data sets, virtual environments) from the folder",
    "Remove large files (data sets, outputs) from the folder",
)
_FEEDBACK_REMEDY = (
    "Release feedback for fewer students at a time (nbgrader release_feedback --student)",
) * 2


def refuse_declared(
    limits: ArchiveLimits,
    members: int | None,
    unpacked: int | None,
    *,
    size: int | None = None,
    feedback: bool = False,
) -> None:
    """Refuse (413) an upload whose ``Content-Length`` (``size``) is over the upload limit, or
    whose sender declared more members or unpacked bytes than ``limits`` allow, before a byte
    of it is read; ``feedback``: many students' feedback, not a folder. A declaration is only a
    hint: what arrives is checked as it streams, whatever was declared."""
    what = "The feedback" if feedback else "The folder"
    fewer_members, fewer_bytes = _FEEDBACK_REMEDY if feedback else _FOLDER_REMEDY
    for declared, limit, code, setting, held, most, fewer in (
        (
            size,
            limits.max_upload_bytes,
            "payload_too_large",
            "MAX_UPLOAD_BYTES",
            f"{what} makes an upload of {size} bytes",
            f"{limits.max_upload_bytes} bytes",
            fewer_bytes,
        ),
        (
            members,
            limits.max_members,
            "archive_too_many_members",
            "MAX_ARCHIVE_MEMBERS",
            f"{what} holds {members} files and folders",
            f"{limits.max_members}",
            fewer_members,
        ),
        (
            unpacked,
            limits.max_unpacked_bytes,
            "archive_too_large",
            "MAX_UNPACKED_BYTES",
            f"{what}'s files add up to {unpacked} bytes",
            f"{limits.max_unpacked_bytes} bytes",
            fewer_bytes,
        ),
    ):
        if declared is not None and declared > limit:
            details = {"limit": limit}
            if code != "payload_too_large":  # a declaration, not the body's length
                details["declared"] = declared
            raise PayloadTooLarge(
                f"{held}; the exchange takes at most {most} in one upload. {fewer}, or ask the "
                f"exchange's operator to raise LTI_EXCHANGE_{setting}. Nothing was stored.",
                code=code,
                details=details,
                closes_connection=True,  # the body is not read
            )


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
    """Reads the request body, copying every byte to the blob writer and enforcing the size cap.

    Reads go into one reused buffer (``readinto`` when the source has it), so a 1 MiB chunk
    costs no allocation: what ``read`` returns (a memoryview) is valid until the next ``read``.
    """

    def __init__(
        self, source: BinaryIO, sink: Callable[[bytes], None], limit: int, buffer: memoryview
    ) -> None:
        self._source = source
        self._readinto = readinto_of(source)
        self._sink = sink
        self._limit = limit
        self._buffer = buffer
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else min(size, CHUNK)
        data: bytes
        if self._readinto is not None:
            data = self._buffer[: self._readinto(self._buffer[:size]) or 0]  # type: ignore[assignment]
        else:
            data = self._source.read(size)
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


_BUFFERS: list[memoryview] = []  # CHUNK-sized read buffers, reused (at most one per thread)


@contextmanager
def _read_buffer() -> Iterator[memoryview]:
    try:
        buffer = _BUFFERS.pop()
    except IndexError:
        buffer = memoryview(bytearray(CHUNK))
    try:
        yield buffer
    finally:
        _BUFFERS.append(buffer)


OnFile = Callable[[str, BinaryIO, int], None]


def scan_archive(
    stream: BinaryIO,
    limits: ArchiveLimits,
    *,
    sink: Callable[[bytes], None] | None = None,
    on_file: OnFile | None = None,
) -> ArchiveManifest:
    """Read ``stream`` to its end as a tar archive, checking every member.

    ``sink`` receives every raw byte (to store the archive as it arrives; each piece is valid only
    during the call: copy what you keep); ``on_file(name, fh,
    size)`` is called for each regular file with its contents. Raises ``ApiError`` on bad input.
    """
    with _read_buffer() as buffer:
        reader = _TeeReader(stream, sink or (lambda _data: None), limits.max_upload_bytes, buffer)
        manifest = _inspect(reader, limits, on_file)
        reader.drain()
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


def max_tar_bytes(limits: ArchiveLimits) -> int:
    """The most tar bytes a gzip upload may unpack to: the file data plus room for headers."""
    return limits.max_unpacked_bytes + limits.max_members * MEMBER_OVERHEAD + CHUNK


def _inspect(reader: _TeeReader, limits: ArchiveLimits, on_file: OnFile | None) -> ArchiveManifest:
    chunks, _gzipped = open_source(reader.read, max_tar_bytes(limits))
    if reader.total == 0:
        raise InvalidRequest("The upload is empty; send a tar archive as the request body.")
    manifest = ArchiveManifest()
    names = NameTree()
    tar = TarReader(chunks)
    for entry in tar:
        if tar.count > limits.max_members:  # every entry counts, as the plugin counts them
            raise PayloadTooLarge(
                f"The archive has more than {limits.max_members} members. Remove generated "
                "files (caches, checkpoints, data) from the folder.",
                code="archive_too_many_members",
                details={"limit": limits.max_members},
            )
        _check_kind(entry)
        _check_not_empty(entry, manifest)
        name = normalise_member_name(entry.name)
        manifest.unpacked_size += entry.size
        if manifest.unpacked_size > limits.max_unpacked_bytes:
            raise PayloadTooLarge(
                f"The archive unpacks to more than {limits.max_unpacked_bytes} bytes. Remove "
                "large files (data sets, outputs) from the folder.",
                code="archive_too_large",
                details={"limit": limits.max_unpacked_bytes},
            )
        if not 0 <= entry.mtime <= MAX_MTIME:
            raise InvalidArchive(
                f"Archive member {entry.name!r} has an impossible modification time "
                f"({entry.mtime:.0f}). Touch the file (or copy it) to give it a current date "
                "and submit again."
            )
        is_dir = entry.kind == "dir"
        if not name:
            if is_dir:
                continue
            raise InvalidArchive(
                f"Archive member {entry.name!r} is a file without a name. Create the archive "
                "again (with tar or nbgrader) and submit it."
            )
        names.add(name, is_dir)
        manifest.members.append(ArchiveMember(name=name, size=entry.size, is_dir=is_dir))
        if not is_dir and on_file is not None:
            on_file(name, tar, entry.size)  # type: ignore[arg-type]
    return manifest


def _check_not_empty(entry: TarEntry, manifest: ArchiveManifest) -> None:
    """An empty name (a header's, or a PAX ``path=``) is refused: the plugin cannot unpack it."""
    if entry.name:
        return
    after = f"after {manifest.members[-1].name!r}" if manifest.members else "the first member"
    raise InvalidArchive(
        f"The archive member at byte {entry.offset} ({after}) has an empty name. Create the "
        "archive again (with tar or nbgrader) and submit it."
    )


def _check_kind(entry: TarEntry) -> None:
    if entry.kind in ("file", "dir"):
        return
    if entry.kind in ("symlink", "hardlink"):
        raise InvalidArchive(
            f"Archive member {entry.name!r} is a link; links are refused. Replace it with the "
            "file itself and submit again."
        )
    raise InvalidArchive(
        f"Archive member {entry.name!r} is a {entry.kind}, not a regular file or directory. "
        "Remove it from the folder and submit again."
    )
