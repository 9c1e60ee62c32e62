"""Blob files written and read around the page cache (``O_DIRECT``), where the file system allows.

A blob is written once and read later, often once (a submission at collect), so keeping its
pages cached buys little, and making them costs much on some machines: on a virtual machine that
returns freed memory to its host (free page reporting, e.g. Firecracker), every new page-cache
page faults in the host first. Measured on the 2-core bench machine: 2.8–9.8 ms of system CPU per
MiB written through the page cache (as the VM's memory state swings), 0.13–0.26 ms with
``O_DIRECT`` (``bench/README.md``).

``DirectFile`` copies what it is given into a reused, page-aligned staging buffer and writes the
buffer in whole aligned blocks; the last partial block goes through the page cache (``O_DIRECT``
is switched off for it). Where the file system refuses ``O_DIRECT`` (tmpfs, some network file
systems), or a direct write is refused, it writes through the page cache from there on, starting
kernel writeback early so the final ``fsync`` has little left to do. Either way the caller still
``fsync``s: direct writes may sit in the disk's volatile cache.

``DirectReader`` reads a file once, start to end (collect, feedback downloads), in aligned
chunks into a reused staging buffer, so reading it does not fill the page cache either.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

from lti_exchange.read_streams import ReadStream
from lti_exchange.storage.durable import WRITEBACK_BYTES, start_writeback

ALIGN = 4096  # a multiple of every common logical block size (512 and 4096)
STAGING_BYTES = 1024 * 1024  # one staging buffer; a multiple of ALIGN
# Page-cache writes go to the kernel in pieces of at most this much. On a VM that hands freed
# memory back to its host (free page reporting), a 1 MiB write() fills the page cache at
# 0.6-0.9 GB/s and a 256 KiB one at 4.8 GB/s (2026-12-04, bench machine; 512 KiB 4.7 GB/s):
# the larger write is given large page-cache folios, taken from the memory the host reclaimed.
PAGE_CACHE_PIECE = 256 * 1024
KEPT_BUFFERS = 8  # staging buffers kept for reuse per process (more are unmapped when given back)
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


class _StagingBuffers:
    """Page-aligned buffers reused across uploads: a new buffer's pages fault on first touch,
    which costs as much as the page cache does on the machines this module is for."""

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        # Private: a process forked while holding buffers gets copies, never shared pages.
        return mmap.mmap(-1, STAGING_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < KEPT_BUFFERS:
                self._free.append(buffer)
                return
        buffer.close()


_BUFFERS = _StagingBuffers()


def _open(path: str, flags: int, mode: int, direct: bool) -> tuple[int, bool]:
    """Open ``path`` with ``O_DIRECT`` if ``direct`` and the file system takes it; the fd and
    whether it is direct."""
    if direct and _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: the file system has no O_DIRECT (tmpfs)
                raise
    return os.open(path, flags, mode), False


def _clear_direct(fd: int) -> None:
    """From now on read or write ``fd`` through the page cache."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)


class _StagedFd:
    """An open file descriptor, whether it is direct, and a staging buffer from the pool."""

    def _open_staged(self, path: str, flags: int, mode: int, direct: bool) -> None:
        self._fd, self.direct = _open(path, flags, mode, direct)
        self._buffer: mmap.mmap | None = _BUFFERS.take()
        self._view = memoryview(self._buffer)

    def _stop_direct(self) -> None:
        if self.direct:
            _clear_direct(self._fd)
            self.direct = False

    def _release(self) -> None:
        """Give the staging buffer back and close the file (idempotent; nothing if the open
        failed)."""
        buffer = getattr(self, "_buffer", None)
        if buffer is None:
            return
        self._view.release()
        _BUFFERS.give(buffer)
        self._buffer = None
        os.close(self._fd)


class DirectFile(_StagedFd):
    """A new file opened for writing (``O_EXCL``), written around the page cache if it can be
    (``direct=False``: through the page cache, for files that will be read again soon)."""

    def __init__(self, path: str, *, direct: bool = True, mode: int = 0o666) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._open_staged(path, flags, mode, direct)
        self._staged = 0
        self._unflushed = 0  # page-cache bytes since writeback was last started

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (nothing of it is kept after the call)."""
        with memoryview(data) as source:
            source = source.cast("B")
            if not self.direct and not self._staged:  # no alignment to keep: no staging copy
                self._write_all(source)
                return
            done = 0
            while done < len(source):
                room = STAGING_BYTES - self._staged
                piece = source[done : done + room]
                self._view[self._staged : self._staged + len(piece)] = piece
                self._staged += len(piece)
                done += len(piece)
                if self._staged == STAGING_BYTES:
                    self._write_staged(STAGING_BYTES)

    def finish(self) -> None:
        """Write what is staged: whole blocks directly, the rest through the page cache."""
        whole = self._staged - self._staged % ALIGN if self.direct else self._staged
        if whole:
            self._write_staged(whole)
        if self._staged:
            self._stop_direct()
            self._write_staged(self._staged)

    def close(self) -> None:
        """Close the file and give the staging buffer back (idempotent)."""
        self._release()

    def _write_staged(self, size: int) -> None:
        """Write the first ``size`` staged bytes and move any bytes after them to the front."""
        with self._view[:size] as pending:
            self._write_all(pending)
        rest = self._staged - size
        if rest:
            self._view[:rest] = self._view[size : self._staged]
        self._staged = rest

    def _write_all(self, data: memoryview) -> None:
        done = 0
        while done < len(data):
            try:
                if self.direct:
                    done += os.write(self._fd, data[done:])
                else:
                    done += os.write(self._fd, data[done : done + PAGE_CACHE_PIECE])
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._stop_direct()  # a direct write refused (alignment): page cache
        if not self.direct:
            self._unflushed += len(data)
            if self._unflushed >= WRITEBACK_BYTES:
                start_writeback(self._fd)
                self._unflushed = 0


class DirectReader(ReadStream, _StagedFd):
    """A file read once from start to end, around the page cache where the file system allows.

    ``read(n)`` returns at most one staging buffer's worth (``STAGING_BYTES``), ``read()`` the
    rest of the file; b"" at the end. It has no ``fileno``: a server must not ``sendfile`` from
    it (that would fill the cache).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self._open_staged(path, os.O_RDONLY | os.O_CLOEXEC, 0, direct=True)
        self._start = self._end = 0
        self._at_end = False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._start == self._end and not self._fill():
            return b""
        stop = min(self._end, self._start + size)
        data = bytes(self._view[self._start : stop])
        self._start = stop
        return data

    def close(self) -> None:
        self._release()
        super().close()

    def _fill(self) -> bool:
        """Read the next chunk into the staging buffer; False at the end of the file."""
        if self._at_end or self._buffer is None:
            return False
        try:
            count = os.readv(self._fd, [self._view])
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self.direct:
                raise
            self._stop_direct()  # a direct read refused (alignment): the page cache
            count = os.readv(self._fd, [self._view])
        # A short read ends the file: the offset after it is not aligned for another direct read.
        self._at_end = count < STAGING_BYTES
        self._start, self._end = 0, count
        return count > 0
