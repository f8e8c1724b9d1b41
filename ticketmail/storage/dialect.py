"""What the SQL of `storage/` may assume of a connection, and where SQLite and PostgreSQL differ.

Every storage function takes a `Conn`: a plain `sqlite3.Connection`, or a
`postgres.PgConn` that speaks the same SQL (`?` and `:name` parameters, `BEGIN IMMEDIATE`).
The SQL is written once in the subset both dialects agree on (`ON CONFLICT … DO NOTHING`,
`RETURNING`, `CASE` instead of a scalar `MAX`); where they cannot agree (ticket numbers, the
search indexes, JSON aggregation), the function asks `is_postgres(conn)` here and says both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import psycopg

__all__ = [
    "ALONGSIDE",
    "DATABASE_ERRORS",
    "Conn",
    "Cursor",
    "Params",
    "Row",
    "insert_id",
    "is_postgres",
]

Params = Sequence[Any] | Mapping[str, Any]  # positional ? or named :name parameters

# A write job's `alongside` (see `Database.write`) when it is safe beside other nodes' jobs
# with no key of its own: its statements touch rows only it takes (an outbox claim, its own
# session) or take them with `SKIP LOCKED`.
ALONGSIDE: tuple[str, ...] = ()

# What a failed statement raises, on either backend.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


class Row(Protocol):
    """A result row: by position, by column name, unpacked; `keys()` names the columns."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What a statement's `execute` returns."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection as the storage functions use it (the writer's or a reader's)."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...
    def close(self) -> None: ...


def is_postgres(conn: Conn) -> bool:
    """The connection is PostgreSQL's (the SQL differs there, see the module's docstring)."""
    return not isinstance(conn, sqlite3.Connection)


def insert_id(conn: Conn, sql: str, parameters: Params) -> int:
    """Run one INSERT into a table keyed by `id`; the new row's id (`RETURNING`, which both
    dialects speak, where only SQLite has a cursor's `lastrowid`)."""
    (new_id,) = conn.execute(sql + " RETURNING id", parameters).fetchone()
    return int(new_id)
