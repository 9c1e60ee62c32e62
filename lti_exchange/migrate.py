"""Alembic, driven from code: upgrade to head, and refuse to serve a database that is behind.

Rolling upgrades: a release's migration runs while the previous release's pods still serve,
so a database *newer* than this code's head is accepted, as long as its revision is a later
one of ours. The rule that makes this safe: **every migration stays backward compatible with
the previous release** (add tables and nullable or defaulted columns; drop or rename only in
a later release, once no running code uses them). Revision ids are sequential four-digit
numbers (``0001``, ``0002``, ...), so an unknown revision numbered above our head is a later
release's; any other unknown revision is not this project's and is refused.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from lti_exchange.config import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
REVISION_ID = re.compile(r"^[0-9]{4}$")
UPGRADE_ADVICE = "run `lti-exchange db upgrade`"
FOREIGN_ADVICE = "check that LTI_EXCHANGE_DATABASE_URL names this exchange's database"


class SchemaOutOfDate(RuntimeError):
    """The database is not at the schema version this code needs."""


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


@functools.cache
def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations define."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(rev.revision for rev in script.walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """Where the database's schema is relative to this code's head.

    ``status``: ``current`` (at head), ``newer`` (a later release's revision: served, see the
    module docstring), ``behind`` (an earlier revision of ours, or empty) or ``foreign`` (a
    revision no release of ours made).
    """

    current: str | None
    head: str
    status: str

    @property
    def usable(self) -> bool:
        return self.status in ("current", "newer")

    @property
    def summary(self) -> str:
        """``ok``, or where the database is, for ``/readyz`` (``at 0004, needs 0005``)."""
        if self.usable:
            return "ok"
        if self.status == "foreign":
            return f"at {self.current}, a revision no release of lti-exchange made"
        return f"at {self.current or 'none'}, needs {self.head}"

    @property
    def problem(self) -> str:
        """What is wrong and what to do, for error messages."""
        advice = FOREIGN_ADVICE if self.status == "foreign" else UPGRADE_ADVICE
        return f"The database schema is {self.summary}: {advice}."


def classify_revision(current: str | None, head: str) -> str:
    """``current``, ``newer``, ``behind`` or ``foreign`` (see ``SchemaState``)."""
    if current == head:
        return "current"
    if current is None or current in known_revisions():
        return "behind"
    if REVISION_ID.match(current) and REVISION_ID.match(head) and current > head:
        return "newer"
    return "foreign"


def schema_state(engine: Engine) -> SchemaState:
    current, head = current_revision(engine), head_revision()
    return SchemaState(current, head, classify_revision(current, head))


def schema_advice(summary: str) -> str:
    """What to do about a ``SchemaState.summary`` that is not ``ok``."""
    return FOREIGN_ADVICE if "no release" in summary else UPGRADE_ADVICE


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (PostgreSQL: under an advisory lock). A database
    already at a later release's revision is left alone (there are no downgrades)."""
    state = schema_state(engine)
    if state.status == "foreign":
        raise SchemaOutOfDate(state.problem)
    if revision == "head" and state.status == "newer":
        log.info(
            "the database is at a later release's schema than %s: nothing to do", head_revision()
        )
        return
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
    """Migrate automatically where allowed (the embedded default); otherwise demand head, or a
    later release's revision (rolling upgrades: see the module docstring)."""
    state = schema_state(engine)
    if state.status == "newer":
        log.warning(
            "the database schema is at %s, a later release's (this code's head is %s): serving "
            "on it, as migrations stay backward compatible for one release",
            state.current,
            state.head,
        )
    if state.usable:
        return
    if state.status == "behind" and settings.should_auto_migrate:
        upgrade(engine)
        return
    raise SchemaOutOfDate(state.problem)
