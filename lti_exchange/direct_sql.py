"""Hot statements: a Core statement compiled once per dialect and run on the DBAPI cursor.

``Connection.execute`` spends 50-70 µs of Python on every statement (a cache key walked over
the statement, an execution context, a result object) before the database sees it; a fetch in
a deadline burst runs two statements and a submission three. A :class:`DirectStatement` is
compiled once per dialect and then runs on the **session's own DBAPI connection**: the same
transaction, commit, rollback and pool as the rest of the request, with the column types' own
bind and result processors (UTC instants, JSON, booleans come out as ``Connection.execute``
gives them). The statement itself goes through SQLAlchemy's own path for raw statements
(``Connection._cursor_execute``, which SQLAlchemy uses for sequences and column defaults): the
engine's ``before_cursor_execute`` listeners (``X-Query-Count``) and ``echo``, and on failure
SQLAlchemy's error handling, so driver errors become ``IntegrityError``,
``OperationalError`` ... and a lost connection is invalidated together with the rest of its
pool, as through ``Connection.execute``.

Only for the hot paths' simple statements: no expanding ``IN``, no post-compile parameters,
inserts given every column whose default is computed in Python (all refused when planned).
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Insert, Select
from sqlalchemy.engine import Connection, Dialect
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
        # Per dialect object (an engine's own: its server version, JSON serialiser, quoting),
        # then per set of columns given to an insert. Two threads may compile the same plan
        # once each; either is right.
        self._plans: WeakKeyDictionary[Dialect, dict[frozenset[str], _Plan]] = WeakKeyDictionary()

    def plan(self, dialect: Dialect, keys: frozenset[str] = frozenset()) -> _Plan:
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans.setdefault(dialect, {})
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = self._compile(dialect, keys)
        return plan

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Plan:
        statement: Any = self.statement
        returning = False
        if isinstance(statement, Insert):
            statement = statement.inline()  # no implicit RETURNING of the key unless asked for
            if self.primary_key is not None and dialect.insert_returning:
                statement, returning = statement.returning(self.primary_key), True
            compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
            if compiled.insert_prefetch or compiled.postfetch:
                # Column defaults computed in Python, or read back: Connection.execute's work.
                raise ValueError(
                    "a DirectStatement insert must be given every column that has a default "
                    f"computed in Python ({', '.join(c.name for c in compiled.insert_prefetch)})"
                )
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
    """Execute ``plan`` on the connection's DBAPI cursor, the way SQLAlchemy runs its own raw
    statements (``Connection._cursor_execute``: the engine's and dialect's events, ``echo``,
    and on failure its error handling: SQLAlchemy's exceptions, the cursor closed, a lost
    connection invalidated with every other connection of the pool)."""
    cursor = None
    try:
        arguments = plan.arguments(params)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    except BaseException as exc:  # noqa: BLE001 - handled (and raised) as SQLAlchemy does
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()
        connection._handle_dbapi_exception(exc, plan.sql, params, None, None)  # noqa: SLF001
    connection._cursor_execute(cursor, plan.sql, arguments)  # noqa: SLF001
    return cursor
