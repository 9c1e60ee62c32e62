"""The migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from lti_exchange.db import Base
from lti_exchange.migrate import current_revision, head_revision

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
