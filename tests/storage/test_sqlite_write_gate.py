"""The SQLite write gate (lti_exchange/sqlite_write_gate.py): a second writer waits for the
first's commit and then writes; reads never wait; a thread holding the gate through one
connection is not made to wait for itself; the engine's connections carry the gate; threads of
one process queue without polling the file lock, other processes still wait for it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from lti_exchange import sqlite_write_gate
from lti_exchange.config import load_settings
from lti_exchange.db import make_engine
from lti_exchange.sqlite_write_gate import GatedConnection, attach_gate


def gated(path) -> GatedConnection:
    connection = sqlite3.connect(
        str(path), factory=GatedConnection, timeout=30, check_same_thread=False
    )
    attach_gate(connection, str(path))
    assert isinstance(connection, GatedConnection)
    return connection


def with_table(path) -> GatedConnection:
    """A connection to a new WAL database holding the table ``t (x INTEGER)``."""
    connection = gated(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (x INTEGER)")
    connection.commit()
    return connection


def test_a_second_writer_waits_for_the_first_commit_and_readers_never_wait(tmp_path):
    path = tmp_path / "db.sqlite3"
    first, second, reader = gated(path), gated(path), gated(path)
    first.execute("PRAGMA journal_mode=WAL")
    first.execute("CREATE TABLE t (x INTEGER)")
    first.commit()
    first.execute("INSERT INTO t VALUES (1)")  # holds the gate until commit
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # no wait: a read
    wrote_at: list[float] = []

    def write() -> None:
        second.execute("INSERT INTO t VALUES (2)")
        wrote_at.append(time.monotonic())
        second.commit()

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    assert wrote_at == [], "the second writer went past the gate while the first held it"
    committed_at = time.monotonic()
    first.commit()
    writer.join(timeout=10)
    assert wrote_at and wrote_at[0] >= committed_at, "the waiter wrote before the commit"
    assert reader.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    for connection in (first, second, reader):
        connection.close()


def test_a_thread_holding_the_gate_does_not_wait_for_itself(tmp_path):
    path = tmp_path / "db.sqlite3"
    outer, inner = gated(path), gated(path)
    outer.execute("CREATE TABLE t (x INTEGER)")
    outer.commit()
    outer.execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    inner.execute("PRAGMA busy_timeout=200")
    try:
        inner.execute("INSERT INTO t VALUES (2)")  # SQLite's own lock refuses, fast
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
    assert time.monotonic() - started < 20  # not the gate's 30 s wait for itself
    outer.rollback()
    inner.rollback()
    outer.close()
    inner.close()


def test_the_engine_gives_file_databases_the_gate(tmp_path):
    settings = load_settings(
        {
            "LTI_EXCHANGE_DATA_DIR": str(tmp_path),
            "LTI_EXCHANGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        }
    )
    engine = make_engine(settings)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        dbapi = connection.connection.dbapi_connection
        assert isinstance(dbapi, GatedConnection) and dbapi._gate is not None
        assert dbapi._gate.held
    assert not dbapi._gate.held  # the commit let it go
    assert (tmp_path / "x.sqlite3-writelock").exists()
    engine.dispose()


def test_a_gate_file_that_cannot_be_opened_leaves_writes_to_sqlite(tmp_path, caplog):
    path = tmp_path / "db.sqlite3"
    connection = gated(path)
    assert connection._gate is not None
    connection._gate.path = str(tmp_path / "no-such-dir" / "db.sqlite3-writelock")
    connection.execute("CREATE TABLE t (x INTEGER)")
    connection.execute("INSERT INTO t VALUES (1)")  # no gate, no error
    connection.commit()
    assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert connection._gate.unusable and "unusable" in caplog.text
    connection.close()


def test_threads_of_one_process_wait_their_turn_without_polling_the_file_lock(
    tmp_path, monkeypatch
):
    path = tmp_path / "db.sqlite3"
    holder = with_table(path)
    refused = []
    flock = sqlite_write_gate.fcntl.flock

    def counting_flock(fd: int, operation: int) -> None:
        try:
            flock(fd, operation)
        except BlockingIOError:
            refused.append(operation)
            raise

    monkeypatch.setattr(sqlite_write_gate.fcntl, "flock", counting_flock)
    holder.execute("INSERT INTO t VALUES (0)")  # holds the gate until commit
    writers = [gated(path) for _ in range(4)]

    def write(connection: GatedConnection, value: int) -> None:
        connection.execute("INSERT INTO t VALUES (?)", (value,))
        connection.commit()

    threads = [threading.Thread(target=write, args=(c, i)) for i, c in enumerate(writers, start=1)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # 800 polls of 0.25 ms if the four waited on the file lock
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)  # nobody went past
    holder.commit()
    for thread in threads:
        thread.join(timeout=10)
    assert refused == [], f"{len(refused)} polls of the file lock by threads of this process"
    assert [x for (x,) in holder.execute("SELECT x FROM t ORDER BY x")] == [0, 1, 2, 3, 4]
    for connection in (holder, *writers):
        connection.close()


HOLD_IN_ANOTHER_PROCESS = """
import sqlite3, sys, time
from lti_exchange.sqlite_write_gate import GatedConnection, attach_gate
c = sqlite3.connect(sys.argv[1], factory=GatedConnection, timeout=30)
attach_gate(c, sys.argv[1])
c.execute("INSERT INTO t VALUES (1)")
print("held", flush=True)
time.sleep(0.5)
print(time.monotonic(), flush=True)
c.commit()
"""


def test_a_writer_waits_for_a_writer_in_another_process(tmp_path):
    path = tmp_path / "db.sqlite3"
    writer = with_table(path)
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None
    assert other.stdout.readline().strip() == "held"
    writer.execute("INSERT INTO t VALUES (2)")  # waits for the other process's commit
    wrote_at = time.monotonic()
    committed_at = float(other.stdout.readline())
    assert other.wait(timeout=10) == 0
    assert wrote_at >= committed_at, "went past the gate another process held"
    writer.commit()
    assert [x for (x,) in writer.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    writer.close()


def test_a_forked_child_does_not_wait_for_a_turn_its_parent_held(tmp_path):
    path = tmp_path / "db.sqlite3"
    parent = with_table(path)
    turn = sqlite_write_gate._turn(str(path) + "-writelock")
    assert turn.acquire(timeout=5)  # as a writer thread of this process holds it at the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child: its own connection, its own turns
            code = 1
            try:
                child = gated(path)
                child.execute("INSERT INTO t VALUES (2)")
                child.commit()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10  # the gate's own wait is 30 s
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        if done == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    finally:
        turn.release()
    assert done != (0, 0), "the child waited for a turn held by its parent's thread"
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert [x for (x,) in parent.execute("SELECT x FROM t")] == [2]
    parent.close()
