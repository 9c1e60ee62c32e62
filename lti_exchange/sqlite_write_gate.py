"""One writer at a time on a SQLite file, handed over without SQLite's sleeps.

SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps
1, 2, 5, … up to 100 ms between tries whatever the writer is doing. At a deadline burst (every
fetch and submit writes a row, five gunicorn workers) those sleeps, not the writes, made the
slowest answers: a write that holds the lock for 1 ms keeps a waiter asleep for 50.

Each connection therefore takes an advisory lock (``flock``) on ``<database>-writelock`` before
its first write statement and drops it when its transaction ends (commit, rollback, close). A
waiter polls that lock every 0.25 ms, so it writes as soon as the writer is done; SQLite's own
lock still guards the file. The threads of one process first queue on a process-wide lock per
database (``_turn``), which wakes the next one when it is released, so only one thread per
process polls: measured, 16 submissions at a time on one worker made 20 failed ``flock`` polls
(each a sleep and a hand-over of the GIL) per submission. A thread that already holds the gate
through another connection does not wait for it (it could only wait for itself); after
``GATE_WAIT`` seconds a waiter goes on without it and SQLite's busy timeout applies, as before.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

GATE_WAIT = 30.0  # the busy timeout (db._sqlite_pragmas)
POLL = 0.00025
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC", "UPSERT")

log = logging.getLogger(__name__)
_holders: dict[int, int] = {}  # thread id -> gates it holds (released maybe by another thread)
_holders_lock = threading.Lock()
_turns: dict[str, threading.Lock] = {}  # database gate path -> this process's writer turn


def _turn(path: str) -> threading.Lock:
    """The lock the threads of this process take, one at a time, before the file lock."""
    with _holders_lock:
        turn = _turns.get(path)
        if turn is None:
            turn = _turns[path] = threading.Lock()
        return turn


def _forget_turns() -> None:
    """In a forked child: a turn held by a thread of the parent would never be released."""
    global _holders_lock
    _turns.clear()
    _holders.clear()
    _holders_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_turns)


class _Gate:
    """The lock file, opened once per connection and per process (``flock`` locks belong to
    an open file: a connection inherited over ``fork`` reopens it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self.held = False
        self.unusable = False
        self._owner = 0  # the thread that took it
        self._turn: threading.Lock | None = None  # this process's turn, while held

    def _file(self) -> int | None:
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:  # e.g. a read-only directory: SQLite's own locking only
                if not self.unusable:
                    log.warning("SQLite write gate %s unusable (%s): writes wait in SQLite's "
                                "busy handler instead", self.path, exc)  # fmt: skip
                self.unusable = True
                return None
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        if self.held:
            return
        me = threading.get_ident()
        if _holders.get(me):
            return  # this thread's other connection holds the gate: waiting would never end
        fd = self._file()
        if fd is None:
            return
        deadline = time.monotonic() + GATE_WAIT
        turn = _turn(self.path)
        if not turn.acquire(timeout=GATE_WAIT):
            return  # go on ungated: SQLite's busy timeout decides
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another process writes
                if time.monotonic() > deadline:
                    turn.release()
                    return
                time.sleep(POLL)
            except BaseException:
                turn.release()
                raise
        self.held, self._owner, self._turn = True, me, turn
        with _holders_lock:
            _holders[me] = _holders.get(me, 0) + 1

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with _holders_lock:
            left = _holders.get(self._owner, 1) - 1
            if left > 0:
                _holders[self._owner] = left
            else:
                _holders.pop(self._owner, None)
        turn, self._turn = self._turn, None
        try:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            if turn is not None and self._pid == os.getpid():
                turn.release()

    def close(self) -> None:
        self.release()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def _is_write(sql: object) -> bool:
    return isinstance(sql, str) and sql.lstrip()[:6].upper() in WRITES


def _before_write(connection: sqlite3.Connection, sql: object) -> None:
    gate = getattr(connection, "_gate", None)
    if gate is not None and _is_write(sql):
        gate.acquire()


class GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> GatedCursor:
        _before_write(self.connection, sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> GatedCursor:
        _before_write(self.connection, sql)
        return super().executemany(sql, parameters)


class GatedConnection(sqlite3.Connection):
    """A ``sqlite3`` connection whose writes pass the gate of its database file (once
    ``attach_gate`` gave it one; ``connect_args={"factory": GatedConnection}``)."""

    _gate: _Gate | None = None

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or GatedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        self._end_transaction(super().commit)

    def rollback(self) -> None:
        self._end_transaction(super().rollback)

    def _end_transaction(self, end: Callable[[], None]) -> None:
        """Commit or roll back, then let the next writer in (also when ending failed)."""
        try:
            end()
        finally:
            if self._gate is not None:
                self._gate.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._gate is not None:
                self._gate.close()


def attach_gate(connection: object, database: str) -> None:
    """Give a new ``GatedConnection`` to the file ``database`` its gate (a no-op for others)."""
    if isinstance(connection, GatedConnection):
        connection._gate = _Gate(os.path.abspath(database) + "-writelock")
