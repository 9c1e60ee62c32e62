"""Hot statements: a Core statement compiled once per dialect and run on the DBAPI cursor.

``Connection.execute`` spends 50-70 µs of Python on every statement (a cache key walked over
the statement, an execution context, a result object) before the database sees it; a fetch in
a deadline burst runs two statements and a submission three. A :class:`DirectStatement` is
compiled once per dialect and then runs on the **session's own DBAPI connection**: the same
transaction, commit, rollback and pool as the rest of the request, with the column types' own
bind and result processors (UTC instants, JSON, booleans come out as ``Connection.execute``
gives them) and the engine's ``before_cursor_execute`` listeners told of every statement
(``X-Query-Count``). Driver errors become SQLAlchemy's (``IntegrityError``,
``OperationalError`` ...) as they would through ``Connection.execute``, and a connection the
driver reports lost is invalidated, so the pool never hands it out again.

Only for the hot paths' simple statements: no expanding ``IN``, no post-compile parameters.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

Processor = Callable[[Any], Any] | None


@dataclass
class _Plan:
    """One statement compiled for one dialect (and, for an insert, one set of columns)."""

    sql: str
    names: tuple[str, ...]  # parameter names, in order where the paramstyle is positional
    positional: bool
    binders: tuple[Processor, ...]  # one per name
    defaults: dict[str, Any]  # values the statement itself binds (literals in a WHERE)
    returning: bool  # an insert that answers its primary key with RETURNING
    row_type: Any = None  # a namedtuple class of the selected columns
    readers: tuple[Processor, ...] | None = None  # result processors, from the first result

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, bind in zip(self.names, self.binders, strict=True):
            value = params[name] if name in params else self.defaults[name]
            values.append(value if bind is None else bind(value))
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))


class DirectStatement:
    """A select or an insert run by :func:`first` / :func:`insert` (module docstring)."""

    def __init__(self, statement: Any, primary_key: Any = None) -> None:
        self.statement = statement
        self.primary_key = primary_key  # inserts: the column whose new value ``insert`` returns
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    def plan(self, dialect: Dialect, keys: frozenset[str] = frozenset()) -> _Plan:
        key = (dialect.name, dialect.paramstyle, dialect.insert_returning, keys)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(dialect, keys)
        return plan

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Plan:
        statement: Any = self.statement
        returning = False
        if isinstance(statement, Insert):
            if self.primary_key is not None and dialect.insert_returning:
                statement, returning = statement.returning(self.primary_key), True
            compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
        else:
            compiled = statement.compile(dialect=dialect)
        sql = compiled.string
        if "POSTCOMPILE" in sql:
            raise ValueError("a DirectStatement cannot hold expanding or post-compile parameters")
        positional = bool(compiled.positional)
        names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
        binds = compiled.binds
        plan = _Plan(
            sql=sql,
            names=names,
            positional=positional,
            binders=tuple(_binder(binds[name].type, dialect) for name in names),
            defaults={n: b.value for n, b in binds.items() if not b.required},
            returning=returning,
        )
        if isinstance(statement, Select):
            fields = list(statement.selected_columns.keys())
            plan.row_type = namedtuple("DirectRow", fields)  # type: ignore[misc]  # noqa: PYI024
        return plan


def _binder(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def first(session: Session, statement: DirectStatement, params: Mapping[str, Any]) -> Any:
    """The first row of a select (a named tuple, typed as ``Connection.execute`` types it), or
    None."""
    connection = session.connection()
    plan = statement.plan(connection.dialect)
    cursor = _run(connection, plan, params)
    try:
        raw = cursor.fetchone()
        if raw is None:
            return None
        if plan.readers is None:
            columns = statement.statement.selected_columns
            plan.readers = tuple(
                column.type.dialect_impl(connection.dialect).result_processor(
                    connection.dialect, description[1]
                )
                for column, description in zip(columns, cursor.description, strict=True)
            )
        return plan.row_type(
            *(v if read is None else read(v) for v, read in zip(raw, plan.readers, strict=True))
        )
    finally:
        cursor.close()


def insert(session: Session, statement: DirectStatement, values: Mapping[str, Any]) -> Any:
    """Run an insert of ``values``; the new primary key when the statement names one."""
    connection = session.connection()
    plan = statement.plan(connection.dialect, frozenset(values))
    cursor = _run(connection, plan, values)
    try:
        if statement.primary_key is None:
            return None
        if plan.returning:
            return cursor.fetchone()[0]
        return cursor.lastrowid
    finally:
        cursor.close()


def _run(connection: Connection, plan: _Plan, params: Mapping[str, Any]) -> Any:
    """Execute ``plan`` on the connection's DBAPI cursor; driver errors as SQLAlchemy's."""
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    arguments = plan.arguments(params)
    cursor = None
    try:
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        connection.dispatch.before_cursor_execute(  # the engine's listeners (query counts)
            connection, cursor, plan.sql, arguments, None, False
        )
        cursor.execute(plan.sql, arguments)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if cursor is not None:
            with contextlib.suppress(Exception):  # a lost connection's cursor may not close
                cursor.close()
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            plan.sql,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc
    return cursor
