"""The SQLite write gate (lti_exchange/sqlite_write_gate.py): a second writer waits for the
first's commit and then writes; reads never wait; a thread holding the gate through one
connection is not made to wait for itself; the engine's connections carry the gate."""

from __future__ import annotations

import sqlite3
import threading
import time

from sqlalchemy import text

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
