"""Alembic, driven from code: upgrade to head, and refuse to serve a database that is behind."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from lti_exchange.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database is not at the schema version this code needs."""


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (PostgreSQL: under an advisory lock)."""
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
                connection.commit()
        return
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT GET_LOCK('lti_exchange_migrate', 120)")
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.exec_driver_sql("SELECT RELEASE_LOCK('lti_exchange_migrate')")
        return
    command.upgrade(config, revision)


def ensure_schema(engine: Engine, settings: Settings) -> None:
    """Migrate automatically where allowed (the embedded default); otherwise demand head."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    if settings.should_auto_migrate:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"The database is at revision {current_revision(engine)!r}, this version needs {head!r}. "
        "Run `lti-exchange db upgrade` first."
    )
