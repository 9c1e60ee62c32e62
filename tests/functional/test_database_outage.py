"""The database goes away under a running service: requests get 503 `database_unavailable`
(the JSON error shape, a message saying to try again), never a bug's 500; liveness stays 200
and readiness says 503."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import BACKENDS, _create_database, start_server, stop_server
from tests.support import assert_error

SERVERS = [backend for backend in BACKENDS if backend != "sqlite"]  # a file cannot go away so
pytestmark = [
    pytest.mark.all_backends,
    pytest.mark.parametrize("backend", SERVERS, indirect=True),
]


def end_connections(backend: str, database_url: str) -> None:
    """End every connection to the database of ``database_url`` (the service's pool)."""
    base, _, name = database_url.rpartition("/")
    name = name.split("?")[0]
    admin = create_engine(f"{base}/postgres" if backend == "postgresql" else f"{base}/")
    try:
        with admin.connect() as connection:
            if backend == "postgresql":
                ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"
                connection.execute(text(ended), {"db": name})
            else:
                listed = "SELECT id FROM information_schema.processlist WHERE db = :db"
                for (pid,) in connection.execute(text(listed), {"db": name}).all():
                    connection.execute(text(f"KILL {int(pid)}"))
    finally:
        admin.dispose()


def test_requests_get_503_while_the_database_is_gone(backend, tmp_path):
    database_url, drop = _create_database(backend, tmp_path)  # this test's own, to drop
    server = start_server(database_url, tmp_path / "data", workers=1)
    try:
        token = server.issue_token("ana", "c1")
        assert server.api("GET", "me", token).status_code == 200
        server.state().engine.dispose()
        end_connections(backend, database_url)  # as a restart or a failover does
        drop()  # new connections find no database
        for rested in (0.0, 1.2):  # a pooled connection used a moment ago, then one that rested
            time.sleep(rested)
            answer = server.api("GET", "courses/c1/assignments", token)
            assert_error(answer, 503, "database_unavailable", "try again")
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 503
    finally:
        stop_server(server)
