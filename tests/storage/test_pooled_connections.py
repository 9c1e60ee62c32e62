"""Pooled database connections: one that died while it rested (a database restart, a server's
idle timeout) is replaced before use and the request goes on; one used a moment ago is used
without a ping (a round trip per request in a deadline burst); a worker's ten threads keep their
connections open between requests."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from lti_exchange import db
from lti_exchange.config import DEFAULT_THREADS, load_settings
from tests.conftest import BACKENDS

SERVERS = [backend for backend in BACKENDS if backend != "sqlite"]  # SQLite has no connection
pytestmark = [
    pytest.mark.all_backends,
    pytest.mark.parametrize("backend", SERVERS, indirect=True),
]
WHO_AM_I = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}
END = {"postgresql": "SELECT pg_terminate_backend({})", "mariadb": "KILL {}"}
REST = 0.3  # seconds (the service's REST_BEFORE_PING, shortened for the test)


@pytest.fixture
def engine(database_url, tmp_path, monkeypatch):
    monkeypatch.setattr(db, "REST_BEFORE_PING", REST)
    settings = load_settings(
        {"LTI_EXCHANGE_DATABASE_URL": database_url, "LTI_EXCHANGE_DATA_DIR": str(tmp_path)}
    )
    engine = db.make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine, monkeypatch) -> list[object]:
    """Every ping the pool sends, recorded."""
    seen: list[object] = []
    ping = engine.dialect.do_ping

    def recorded(dbapi_connection):
        seen.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", recorded)
    return seen


def connection_id(engine, backend: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(WHO_AM_I[backend])).scalar_one())


def test_a_connection_that_died_while_resting_is_replaced(engine, pings, backend, database_url):
    first = connection_id(engine, backend)
    killer = create_engine(database_url)
    try:
        with killer.connect() as connection:
            connection.execute(text(END[backend].format(first)))
            connection.commit()
    finally:
        killer.dispose()
    time.sleep(REST + 0.1)
    second = connection_id(engine, backend)  # would raise "server closed the connection"
    assert second != first
    assert len(pings) == 1


def test_a_connection_used_a_moment_ago_is_not_pinged(engine, pings, backend):
    ids = {connection_id(engine, backend) for _ in range(20)}
    assert len(ids) == 1  # one pooled connection, reused
    assert pings == []
    time.sleep(REST + 0.1)
    assert connection_id(engine, backend) in ids
    assert len(pings) == 1


def test_as_many_connections_as_a_worker_has_threads_stay_open(engine, backend):
    threads = DEFAULT_THREADS  # config/gunicorn.conf.py's default LTI_EXCHANGE_THREADS
    all_in = threading.Barrier(threads)

    def request() -> int:
        with engine.connect() as connection:
            all_in.wait(timeout=30)  # ten requests at once, each with a connection
            return int(connection.execute(text(WHO_AM_I[backend])).scalar_one())

    def burst() -> set[int]:
        seen: list[int] = []
        workers = [threading.Thread(target=lambda: seen.append(request())) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(seen) == threads
        return set(seen)

    first = burst()
    assert engine.pool.checkedin() == threads  # none closed when returned
    assert burst() == first  # the next burst opens no connection of its own
