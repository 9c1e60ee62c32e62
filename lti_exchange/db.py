"""Engine per backend, session factory, and the declarative base with a naming convention.

The request-scoped session lives in ``lti_exchange.web.current`` (this module has no Flask)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from lti_exchange.config import Settings
from lti_exchange.sqlite_write_gate import GatedConnection, attach_gate
from lti_exchange.storage.durable import GroupSync

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: Settings) -> Engine:
    """Create the engine with per-backend settings (SQLite WAL + busy timeout; servers: pool
    recycling, and a ping before using a connection that rested, ``ping_after_rest``)."""
    url = settings.resolved_database_url
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and ":memory:" not in url:
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if ":memory:" not in url:
            kwargs["connect_args"]["factory"] = GatedConnection  # one writer, no sleeps
    else:
        kwargs.update(pool_recycle=1800, pool_size=settings.db_pool_size)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        ping_after_rest(engine)
    return engine


REST_BEFORE_PING = 1.0  # seconds of rest after which a pooled connection is pinged before use
_RESTED_FROM = "lti_exchange.rested_from"


def ping_after_rest(engine: Engine) -> None:
    """Check a pooled connection before it is used again, when it rested ``REST_BEFORE_PING``
    seconds or more; a dead one is replaced and the request goes on.

    Connections die while they rest (a database restart or failover, a server's idle timeout),
    not between two requests a few milliseconds apart. SQLAlchemy's ``pool_pre_ping`` pings
    before every use: a round trip per request, 0.4 ms of the service's CPU per submit on
    PostgreSQL, measured, in a deadline burst where no connection ever rests.
    """

    @event.listens_for(engine, "checkin")
    def _resting(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RESTED_FROM] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_RESTED_FROM, None)
        if since is None or time.monotonic() - since < REST_BEFORE_PING:
            return  # new, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means: not this connection
            raise DisconnectionError(f"a pooled connection died while it rested: {exc}") from exc
        if not alive:
            raise DisconnectionError("a pooled connection died while it rested")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    database = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
    if database:  # a file, not memory
        attach_gate(dbapi_connection, database)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_WAL_SYNC = GroupSync("fdatasync")


def make_durable(session: Session) -> None:
    """After ``session.commit()``: make sure that commit survives a power cut before answering.

    SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit appends to the ``-wal`` file
    without flushing it (fast, and safe against crashes of the process, but not of the
    machine). Work that answers 201 (submissions, releases, feedback) calls this to flush the
    WAL; commits that finish at the same moment share one flush (``GroupSync``), and none is
    made while holding SQLite's write lock. PostgreSQL and MariaDB flush their own log at
    commit, so this does nothing for them.
    """
    url = session.get_bind().engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    # No WAL file: the last connection closed and checkpointed it into the database file
    # (which a checkpoint flushes), or the database is not in WAL mode (it syncs at commit).
    with contextlib.suppress(FileNotFoundError):
        _WAL_SYNC.sync(os.path.abspath(url.database) + "-wal")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)
