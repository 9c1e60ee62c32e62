"""Flushes to stable storage, shared by the threads that need them at the same moment.

``GroupSync.sync(path)`` returns once an ``fsync`` of ``path`` has *started* after the call began
and finished, so whatever the caller wrote or renamed before calling is on disk. Callers that
arrive while a flush of the same path is running wait for it to end, and the next flush then
covers all of them at once (group commit): at a deadline, sixteen uploads finishing together
cost one directory flush, not sixteen, with the same guarantee for each.

``start_writeback`` asks the kernel to begin writing a file's dirty pages now (Linux
``sync_file_range``), so the ``fsync`` at the end of a large upload has little left to do;
elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass, field
from typing import Any

WRITEBACK_BYTES = 8 * 1024 * 1024  # start writeback after this many bytes of one blob
_SYNC_FILE_RANGE_WRITE = 2


@dataclass
class _Flush:
    finished: bool = False
    error: OSError | None = None


@dataclass
class _PathState:
    running: _Flush | None = None  # the flush under way
    waiting: _Flush | None = None  # the next one: covers everyone who came during ``running``
    cond: threading.Condition = field(default_factory=threading.Condition)


class GroupSync:
    """Coalesce concurrent ``fsync`` calls on the same path within this process."""

    def __init__(self, flush: str = "fsync") -> None:
        self._flush = flush  # the ``os`` function's name, looked up at each flush
        self._states: dict[str, _PathState] = {}
        self._lock = threading.Lock()

    def _state(self, path: str) -> _PathState:
        with self._lock:
            state = self._states.get(path)
            if state is None:
                if len(self._states) > 4096:  # keep the table small: idle entries go
                    self._states = {k: v for k, v in self._states.items() if v.running or v.waiting}
                state = self._states[path] = _PathState()
            return state

    def sync(self, path: str) -> None:
        """Flush ``path`` (a file or a directory) once after this call began."""
        state = self._state(path)
        with state.cond:
            if state.running is None:
                flush = state.running = _Flush()
            else:  # a flush began before we came: it may miss our writes, so join the next
                flush = state.waiting = state.waiting or _Flush()
                while not flush.finished and not (state.running is None and state.waiting is flush):
                    state.cond.wait()
                if flush.finished:
                    if flush.error is not None:
                        raise OSError(flush.error.errno, flush.error.strerror, path)
                    return
                state.running, state.waiting = flush, None
        try:
            self._flush_path(path)
        except OSError as exc:
            flush.error = exc
            raise
        finally:
            with state.cond:
                flush.finished = True
                state.running = None
                state.cond.notify_all()

    def _flush_path(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            getattr(os, self._flush)(fd)
        finally:
            os.close(fd)


DIRECTORY_SYNC = GroupSync()


def _load_sync_file_range() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int) -> None:
    """Begin writing ``fd``'s dirty pages to disk without waiting (a hint; errors are ignored)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
