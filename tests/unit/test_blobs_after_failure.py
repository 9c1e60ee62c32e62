"""``ServiceContext.commit_or_delete_blobs``: a unit that failed leaves no blob behind, except
when the database dropped the connection. Then the commit may have happened (a failover at that
instant) and a row name the blob, so it is kept for the orphan sweep to judge."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from lti_exchange.archives.upload import ArchiveLimits
from lti_exchange.services.context import ServiceContext
from lti_exchange.storage import FilesystemStorage


@pytest.fixture
def context(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with Session(engine) as session:
        yield ServiceContext(
            session=session,
            storage=FilesystemStorage(tmp_path / "storage"),
            limits=ArchiveLimits(max_upload_bytes=2**20, max_unpacked_bytes=2**20, max_members=9),
        )
    engine.dispose()


def stored_blob(context: ServiceContext) -> str:
    writer = context.storage.writer("submissions")
    writer.write(b"the student's work")
    return writer.commit().key


def failing(error: Exception):
    def unit() -> None:
        raise error

    return unit


LOST_CONNECTION = OperationalError(
    "COMMIT", {}, Exception("server closed"), connection_invalidated=True
)
BAD_STATEMENT = OperationalError("INSERT ...", {}, Exception("no such table: submission"))
CLASH = IntegrityError("INSERT ...", {}, Exception("UNIQUE constraint failed"))


@pytest.mark.parametrize("error", [BAD_STATEMENT, CLASH, ValueError("a bug")])
def test_a_failed_unit_deletes_its_blobs(context, error):
    key = stored_blob(context)

    with pytest.raises(type(error)):
        context.commit_or_delete_blobs([key], failing(error))

    assert not context.storage.exists(key)


def test_a_connection_lost_at_commit_keeps_the_blobs_a_row_may_name(context):
    key = stored_blob(context)
    assert LOST_CONNECTION.connection_invalidated

    with pytest.raises(OperationalError):
        context.commit_or_delete_blobs([key], failing(LOST_CONNECTION))

    assert context.storage.exists(key)
    with context.storage.open(key) as blob:
        assert blob.read() == b"the student's work"


def test_a_unit_that_succeeds_keeps_its_blobs(context):
    key = stored_blob(context)

    assert context.commit_or_delete_blobs([key], lambda: "done") == "done"

    assert isinstance(context.storage.open(key), io.BufferedReader)
