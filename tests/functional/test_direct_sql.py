"""The hot paths' statements run on the DBAPI cursor (``lti_exchange.direct_sql``) and must give
what ``Connection.execute`` gives: the same typed rows (aware UTC instants, booleans, JSON), the
new primary key, SQLAlchemy's own exceptions, every statement shown to the engine's listeners,
and a connection the database dropped never handed out again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from lti_exchange import direct_sql
from lti_exchange.api.common import ANY_ROLE
from lti_exchange.direct_sql import DirectStatement
from lti_exchange.models import Enrolment, Event, Submission
from lti_exchange.models.types import utcnow
from lti_exchange.services.authorisation import _ENROLMENT, _ENROLMENT_SELECT, authorise_course
from lti_exchange.services.context import _DIRECT_INSERT_EVENT
from lti_exchange.services.submissions import _INSERT_SUBMISSION, _SUBMIT_TARGET
from tests.support import NOTEBOOK, release_as_teacher

# Each driver types results and reports errors its own way (SQLite's strings for instants,
# MariaDB's integers for booleans, PostgreSQL's native JSON), and each loses connections
# its own way.
pytestmark = pytest.mark.all_backends


@pytest.fixture
def student(live_server, course):
    """A released 'ps1' in ``course``, and the verified claims of a student enrolled there."""
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK, "data.txt": b"x"})
    state = live_server.state()
    return state, state.tokens.verify(live_server.issue_token("ada", course))


def params_of(claims, course: str) -> dict:
    return {"user_id": claims.user_id, "course_code": course, "org_id": claims.org_id}


def test_rows_are_typed_as_connection_execute_types_them(student, course):
    state, claims = student
    revoked_at = utcnow() - timedelta(minutes=5)
    with state.session_factory() as session:
        session.execute(
            update(Enrolment)
            .where(Enrolment.user_id == claims.user_id)
            .values(tokens_not_before=revoked_at)
        )
        session.commit()
    params = params_of(claims, course)
    with state.session_factory() as session:
        direct = direct_sql.first(session, _ENROLMENT, params)
        core = session.connection().execute(_ENROLMENT_SELECT, params).one()
        lookup = _SUBMIT_TARGET.lookup("ps1")
        joined = direct_sql.first(session, lookup.statement, {**params, **lookup.params})
        joined_core = (
            session.connection()
            .execute(lookup.statement.statement, {**params, **lookup.params})
            .one()
        )
    assert direct._asdict() == core._asdict()
    assert direct.active is True
    assert direct.tokens_not_before == revoked_at  # aware, UTC, microseconds kept
    assert direct.tokens_not_before.utcoffset() == timedelta(0)
    assert joined._asdict() == joined_core._asdict()
    assert joined.release_notebooks == ["ps1"]  # JSON decoded
    assert joined.released is True


def test_no_row_is_none(student, course):
    state, claims = student
    with state.session_factory() as session:
        assert direct_sql.first(session, _ENROLMENT, params_of(claims, "no-such-course")) is None


def test_inserts_answer_their_primary_key_and_store_typed_values(student, course):
    state, claims = student
    at = utcnow()
    with state.session_factory() as session:
        caller = authorise_course(session, claims, course, ANY_ROLE)
        row = {
            "kind": "test",
            "course_id": caller.course_id,
            "assignment_id": None,
            "user_id": caller.user_id,
            "subject_id": 7,
            "created_at": at,
        }
        direct_sql.insert(session, _DIRECT_INSERT_EVENT, {**row, "details": {"version": 2}})
        direct_sql.insert(session, _DIRECT_INSERT_EVENT, row)  # no details: SQL NULL
        session.commit()
        events = session.scalars(
            select(Event).where(Event.kind == "test", Event.user_id == caller.user_id)
        ).all()
    assert sorted((e.details is None, e.created_at == at, e.subject_id) for e in events) == [
        (False, True, 7),
        (True, True, 7),
    ]
    assert [e.details for e in events if e.details is not None] == [{"version": 2}]


def submission_values(caller, assignment_id: int, key: str) -> dict:
    return {
        "assignment_id": assignment_id,
        "user_id": caller.user_id,
        "timestamp": utcnow(),
        "blob_key": "submissions/00/direct-sql-test",
        "sha256": "0" * 64,
        "size": 1,
        "notebooks": ["ps1"],
        "idempotency_key": key,
    }


def test_a_constraint_refusal_is_sqlalchemys_integrity_error(student, course):
    state, claims = student
    with state.session_factory() as session:
        caller = authorise_course(session, claims, course, ANY_ROLE, _SUBMIT_TARGET.lookup("ps1"))
        target = _SUBMIT_TARGET.row(session, caller, "ps1")
        values = submission_values(caller, target.assignment_id, "k-1")
        first_id = direct_sql.insert(session, _INSERT_SUBMISSION, values)
        session.commit()
        with pytest.raises(IntegrityError):
            direct_sql.insert(session, _INSERT_SUBMISSION, values)  # the same key again
        session.rollback()
        stored = session.get_one(Submission, first_id)
        assert (stored.idempotency_key, stored.notebooks) == ("k-1", ["ps1"])
        again = direct_sql.insert(
            session, _INSERT_SUBMISSION, submission_values(caller, target.assignment_id, "k-2")
        )
        session.commit()
    assert again > first_id


def test_the_engines_listeners_see_every_direct_statement(student, course):
    state, claims = student
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(state.engine, "before_cursor_execute", note)
    try:
        with state.session_factory() as session:
            direct_sql.first(session, _ENROLMENT, params_of(claims, course))
            direct_sql.first(session, _ENROLMENT, params_of(claims, course))
    finally:
        event.remove(state.engine, "before_cursor_execute", note)
    assert len(seen) == 2 and all(s.lstrip().upper().startswith("SELECT") for s in seen)


def test_statements_it_cannot_run_are_refused_when_planned(student):
    state, _claims = student
    many = DirectStatement(select(Event.id).where(Event.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="expanding"):
        many.plan(state.engine.dialect)


def test_a_connection_the_database_dropped_is_not_used_again(student, course, backend):
    state, claims = student
    params = params_of(claims, course)
    with state.session_factory() as session:
        connection = session.connection()
        dbapi_connection = connection.connection.dbapi_connection
        drop_connection(state.engine, backend, dbapi_connection)
        with pytest.raises(DBAPIError) as refused:
            direct_sql.first(session, _ENROLMENT, params)
        assert refused.value.connection_invalidated
        session.rollback()
    with state.session_factory() as session:  # a live connection: the dead one was discarded
        found = direct_sql.first(session, _ENROLMENT, params)
        assert session.connection().connection.dbapi_connection is not dbapi_connection
    assert found.user_id == claims.user_id


def test_a_lost_connection_recycles_the_rest_of_the_pool(student, course, backend):
    """A database that dropped one connection (a restart, a failover) dropped the others too:
    the pool must not hand out the ones that were resting in it, as Connection.execute's own
    error handling ensures."""
    state, claims = student
    params = params_of(claims, course)
    with state.session_factory() as session, state.session_factory() as resting:
        used = session.connection().connection.dbapi_connection
        resting_connection = resting.connection().connection.dbapi_connection
        resting.close()  # back in the pool, where a restart kills it too
        drop_connection(state.engine, backend, resting_connection)
        drop_connection(state.engine, backend, used)
        with pytest.raises(DBAPIError) as refused:
            direct_sql.first(session, _ENROLMENT, params)
        assert refused.value.connection_invalidated
        session.rollback()
    with state.session_factory() as session:
        found = direct_sql.first(session, _ENROLMENT, params)
        fresh = session.connection().connection.dbapi_connection
    assert fresh is not used and fresh is not resting_connection
    assert found.user_id == claims.user_id


def test_inserts_that_would_lose_python_defaults_are_refused_when_planned(student):
    state, _claims = student
    from lti_exchange.models import Grade  # noqa: PLC0415 - only for this check

    defaults = [c.name for c in Grade.__table__.columns if c.default is not None]
    assert defaults, "the check needs a table with a column default computed in Python"
    with pytest.raises(ValueError, match="default"):
        DirectStatement(insert(Grade.__table__)).plan(state.engine.dialect)


def drop_connection(engine, backend: str, dbapi_connection) -> None:
    """End ``dbapi_connection`` as the database would: closed (SQLite), or killed by the server
    from a connection of its own, outside the pool (PostgreSQL, MariaDB)."""
    if backend == "sqlite":
        dbapi_connection.close()
        return
    cursor = dbapi_connection.cursor()
    ask = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    cursor.execute(ask)
    server_id = cursor.fetchone()[0]
    cursor.close()
    dbapi_connection.commit()
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    killer = create_engine(engine.url, poolclass=NullPool)
    try:
        with killer.connect() as other:
            other.execute(text(kill), {"id": server_id})
            other.commit()
    finally:
        killer.dispose()
