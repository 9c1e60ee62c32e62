"""``run_with_retry``: a concurrent write is tried again (and a 409 at the end), but a full
database is a 507 at once, the blob store's error, with the transaction rolled back.

The full database is real: SQLite's ``max_page_count`` makes it answer SQLITE_FULL ("database
or disk is full") exactly as a full disk does."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from lti_exchange.errors import Conflict, InsufficientStorage
from lti_exchange.services import retry
from lti_exchange.services.retry import is_disk_full, is_unavailable, run_with_retry

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("data", LargeBinary))


@pytest.fixture
def session(tmp_path):
    # One connection: SQLite's max_page_count holds for the connection that set it.
    engine = create_engine(f"sqlite:///{tmp_path / 'small.db'}", poolclass=StaticPool)
    metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_a_full_sqlite_database_is_a_507_at_once_and_stores_nothing(session):
    used = session.connection().exec_driver_sql("PRAGMA page_count").scalar_one()
    session.connection().exec_driver_sql(f"PRAGMA max_page_count = {used + 2}")
    session.commit()
    calls = []

    def unit() -> None:
        calls.append(1)
        for _ in range(20):  # 20 × 4 KiB: far more than two pages
            session.execute(rows.insert().values(data=b"x" * 4096))
        session.commit()

    with pytest.raises(InsufficientStorage) as refused:
        run_with_retry(session, unit, what="store rows")
    assert refused.value.status == 507 and refused.value.code == "insufficient_storage"
    assert "storage is full" in refused.value.message
    assert is_disk_full(refused.value.__cause__)  # the database's own error, kept as the cause
    assert len(calls) == 1  # no retries: waiting does not free a disk
    assert session.execute(select(func.count()).select_from(rows)).scalar_one() == 0


def test_a_locked_database_is_still_retried_then_409(session, monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda _seconds: None)
    calls = []

    def unit() -> None:
        calls.append(1)
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    with pytest.raises(Conflict):
        run_with_retry(session, unit, what="store rows")
    assert len(calls) == retry.ATTEMPTS


class _PsycopgLike(Exception):
    sqlstate = "53100"  # disk_full


@pytest.mark.parametrize(
    ("driver_error", "full"),
    [
        (Exception("database or disk is full"), True),  # sqlite3
        (_PsycopgLike("could not extend file: No space left on device"), True),
        (pymysql.err.OperationalError(1021, "Disk full (/tmp/#sql_1.MAI)"), True),
        (pymysql.err.OperationalError(1114, "The table 'x' is full"), True),
        (Exception("database is locked"), False),
        (pymysql.err.OperationalError(1213, "Deadlock found"), False),
    ],
)
def test_disk_full_is_recognised_for_every_driver(driver_error, full):
    assert is_disk_full(OperationalError("INSERT", {}, driver_error)) is full


def test_a_full_database_outside_a_retried_write_is_a_507_too(tmp_path):
    """A write that does not go through ``run_with_retry`` (a submission, feedback) and meets a
    full database answers the same 507 in the error shape; another database error stays a 500."""
    import sqlite3

    from tests.factories import registered_app

    client = registered_app(tmp_path)
    app = client.application

    def fail(message: str):
        raise OperationalError("INSERT INTO submission ...", {}, sqlite3.OperationalError(message))

    app.add_url_rule("/api/v1/full-test", "full", lambda: fail("database or disk is full"))
    app.add_url_rule("/api/v1/broken-test", "broken", lambda: fail("no such table: x"))
    full = client.get("/api/v1/full-test")
    assert full.status_code == 507
    assert full.get_json()["error"]["code"] == "insufficient_storage"
    assert "storage is full" in full.get_json()["error"]["message"]
    broken = client.get("/api/v1/broken-test")
    assert broken.status_code == 500 and broken.get_json()["error"]["code"] == "internal_error"


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (OperationalError(None, None, Exception("connection refused")), True),  # connecting
        (
            OperationalError(
                "SELECT 1",
                {},
                Exception("server closed the connection"),
                connection_invalidated=True,
            ),
            True,
        ),
        (OperationalError("SELECT x FROM y", {}, Exception("no such table: y")), False),
        (OperationalError("INSERT INTO s", {}, Exception("database is locked")), False),
    ],
)
def test_an_unreachable_database_is_told_from_a_bad_statement(error, unavailable):
    assert is_unavailable(error) is unavailable
