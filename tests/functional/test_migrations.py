"""The migrations build exactly the schema the models describe, on every backend; a release
serves on its own schema head or a later release's (rolling upgrades), never on one behind."""

from __future__ import annotations

import subprocess

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from lti_exchange import create_app
from lti_exchange.config import load_settings
from lti_exchange.db import Base
from lti_exchange.migrate import (
    MIGRATIONS_DIR,
    SchemaOutOfDate,
    classify_revision,
    current_revision,
    head_revision,
    known_revisions,
    schema_state,
)
from tests.conftest import BIN, ROOT

# Migrations vs models: each database has its own DDL.
pytestmark = pytest.mark.all_backends


def test_migrated_schema_matches_models(live_server, database_url):
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


# --- rolling upgrades: which schema revisions a release serves on ------------------------------


def set_revision(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lti-exchange"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )


@pytest.fixture
def migrated(tmp_path):
    """A migrated SQLite database named explicitly (so nothing migrates it on start-up)."""
    url = f"sqlite:///{tmp_path / 'exchange.sqlite3'}"
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LTI_EXCHANGE_DATA_DIR": str(tmp_path / "data"),
        "LTI_EXCHANGE_DATABASE_URL": url,
    }
    assert cli(env, "db", "upgrade").returncode == 0
    return env


def readyz(env: dict[str, str]):
    """Start the app (``create_app`` checks the schema) and ask ``/readyz``."""
    app = create_app(load_settings(env))
    try:
        return app.test_client().get("/readyz")
    finally:
        app.extensions["lti_exchange"].engine.dispose()


def later_revision() -> str:
    return f"{int(head_revision()) + 1:04d}"


@pytest.mark.one_backend
def test_a_later_releases_schema_is_served(migrated):
    """The migration Job of the next release ran: this release's pods stay ready."""
    later = later_revision()
    assert later not in known_revisions()
    set_revision(migrated["LTI_EXCHANGE_DATABASE_URL"], later)
    answer = readyz(migrated)  # starts: ensure_schema accepts it
    assert answer.status_code == 200, answer.text
    assert answer.json["schema"] == "ok"
    done = cli(migrated, "db", "upgrade")  # an old Job run again: nothing to do, no downgrade
    assert done.returncode == 0, done.stderr
    assert f"left at {later}" in done.stdout
    assert current_revision_of(migrated) == later


@pytest.mark.one_backend
def test_a_schema_behind_is_refused_with_what_to_do(migrated):
    head = head_revision()
    older = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(head).down_revision
    set_revision(migrated["LTI_EXCHANGE_DATABASE_URL"], older)
    with pytest.raises(SchemaOutOfDate, match=f"at {older}, needs {head}: run `lti-exchange db"):
        create_app(load_settings(migrated))
    schema = schema_state_of(migrated)
    assert (schema.status, schema.usable) == ("behind", False)
    assert schema.summary == f"at {older}, needs {head}"  # what /readyz shows


@pytest.mark.one_backend
def test_a_revision_that_is_not_ours_is_refused(migrated):
    """Not a later release's: another application's database, or a hand-made stamp."""
    set_revision(migrated["LTI_EXCHANGE_DATABASE_URL"], "ae1027a6acf")
    with pytest.raises(SchemaOutOfDate, match="LTI_EXCHANGE_DATABASE_URL"):
        create_app(load_settings(migrated))
    done = cli(migrated, "db", "upgrade")
    assert done.returncode == 1
    assert "no release of lti-exchange made" in done.stderr and "Traceback" not in done.stderr
    assert classify_revision("0001", head_revision()) == "behind"
    assert classify_revision(None, head_revision()) == "behind"


@pytest.mark.one_backend
def test_readyz_names_a_foreign_revision_and_what_to_check(migrated):
    app = create_app(load_settings(migrated))
    engine = app.extensions["lti_exchange"].engine
    try:
        set_revision(migrated["LTI_EXCHANGE_DATABASE_URL"], "ae1027a6acf")
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        error = answer.json["error"]
        assert (
            error["details"]["schema"]
            == "at ae1027a6acf, a revision no release of lti-exchange made"
        )
        assert (
            "check that LTI_EXCHANGE_DATABASE_URL names this exchange's database"
            in error["message"]
        )
        set_revision(migrated["LTI_EXCHANGE_DATABASE_URL"], later_revision())
        assert app.test_client().get("/readyz").status_code == 200  # no restart needed
    finally:
        engine.dispose()


def current_revision_of(env: dict[str, str]) -> str | None:
    engine = create_engine(env["LTI_EXCHANGE_DATABASE_URL"])
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def schema_state_of(env: dict[str, str]):
    engine = create_engine(env["LTI_EXCHANGE_DATABASE_URL"])
    try:
        return schema_state(engine)
    finally:
        engine.dispose()
