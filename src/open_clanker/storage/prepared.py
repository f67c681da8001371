"""Hot-path statements compiled once; on SQLite run straight on the stdlib driver.

A statement still is a SQLAlchemy construct, written once for both backends. On PostgreSQL it
runs through `Connection.execute` as every other statement does. On SQLite it is compiled to
its SQL text and fixed parameters once (an INSERT once per set of columns given, at its first
run), and each run is one `sqlite3` call on the
transaction's own connection (same transaction, same NUL guard): SQLAlchemy's execution path
(~40 µs a statement, five to nine statements a message) was the largest piece of the SQLite
thread's CPU (docs/benchmarks.md, "Levers").

Only for statements whose binds are plain values: no expanding `IN`, no Python-side column
defaults, no type that converts on the way in or out (the schema's are strings and numbers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.nul_guard import clean


def _named_sqlite() -> Any:
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect(paramstyle="named")


class Prepared:
    """One statement: `rows`, `scalar`, `one` or `rowcount` inside a transaction function."""

    __slots__ = ("_compiled", "_insert", "_raw", "_stmt")

    def __init__(self, stmt: Any, dialect: str) -> None:
        self._stmt = stmt
        self._raw = dialect == "sqlite"
        # An INSERT's columns are the keys its caller passes, as with `Connection.execute`:
        # compiled once per set of keys (a hot insert always passes the same set).
        self._insert = isinstance(stmt, sa.Insert)
        self._compiled: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
        if self._raw and not self._insert:
            self._compiled[()] = self._compile(None)

    def _compile(self, keys: tuple[str, ...] | None) -> tuple[str, dict[str, Any]]:
        compiled = self._stmt.compile(
            dialect=_named_sqlite(), column_keys=list(keys) if keys is not None else None
        )
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("Prepared: a statement with expanding binds")
        # The binds the statement fixes itself (`status = 'pending'`, `claimed_by = NULL`,
        # julianday's 'now'); the caller's parameters fill or override the rest.
        fixed = {
            name: value
            for name, value in compiled.params.items()
            if not compiled.binds[name].required
        }
        return str(compiled), fixed

    def _run(self, conn: sa.Connection, params: Mapping[str, Any]) -> sqlite3.Cursor:
        key = tuple(params) if self._insert else ()
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(key)
        sql, fixed = found
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            cursor: sqlite3.Cursor = raw.execute(sql, clean({**fixed, **params}))
        except sqlite3.Error as exc:
            # As SQLAlchemy would raise it (IntegrityError, OperationalError, …): callers
            # tell storage trouble by SQLAlchemy's exceptions on both backends.
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, sqlite3.Error, hide_parameters=True
            ) from exc
        return cursor

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> list[Any]:
        if self._raw:
            return self._run(conn, params).fetchall()
        return list(conn.execute(self._stmt, dict(params)).all())

    def scalar(self, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None (no row)."""
        if self._raw:
            found = self._run(conn, params).fetchall()  # fetched whole: RETURNING completes
            return found[0][0] if found else None
        return conn.execute(self._stmt, dict(params)).scalar()

    def one(self, conn: sa.Connection, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Exactly one row (an upsert's or insert's RETURNING)."""
        if self._raw:
            found = self._run(conn, params).fetchall()
            if len(found) != 1:
                raise sa.exc.NoResultFound(f"{len(found)} rows where one was expected")
            return tuple(found[0])
        return tuple(conn.execute(self._stmt, dict(params)).one())

    def rowcount(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        if self._raw:
            return int(self._run(conn, params).rowcount)
        return int(conn.execute(self._stmt, dict(params)).rowcount)
