"""PostgreSQL through psycopg 3: a connection that speaks storage's SQL, and the schema at open.

`PgConn` takes the SQL as storage writes it for both dialects (`?` and `:name` parameters,
`BEGIN IMMEDIATE`) and says it in PostgreSQL's words here, in one place: parameters become
`%s` and `%(name)s` (a literal `%` doubled); `BEGIN IMMEDIATE`, SQLite's "take the write lock
now", becomes BEGIN plus a transaction-level advisory lock that every node's writer takes, so
writes across nodes are serialised as SQLite's one writer serialises them in one process
(`begin_write`: held shared by the trips whose jobs are safe beside each other, and then
only the keys they name are held exclusively);
booleans are stored as 0 and 1 as in SQLite, and an integral `numeric` (a SUM) is read back
as an int. Rows are read by position and by column name, like `sqlite3.Row`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import psycopg
import structlog
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from ticketmail.errors import TicketmailError
from ticketmail.storage._pg_schema import PG_MIGRATIONS, PG_SCHEMA
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.dialect import Conn, Cursor, Params

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "PgConn",
    "begin_write",
    "broken",
    "connect",
    "migrate",
    "reader_pool",
    "translate",
    "try_keys",
]

log = structlog.get_logger()

# Bounded waits, so that a database gone away is noticed instead of waited for.
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 30_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
# Advisory lock keys (one number space for ticketmail's locks in the database).
WRITE_LOCK = 0x7469636B  # every writer trip, on every node: "tick"
# A job's keys (`begin_write`) are hashed into the two-int advisory lock space (a different
# space from the one-bigint locks above) under this class id.
KEY_LOCKS = 0x746B
MIGRATE_LOCK = 0x7469636C  # the schema's migration, one node at a time

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_]\w*)|%")


def _token(match: re.Match[str]) -> str:
    token = match.group(0)
    if token == "?":  # noqa: S105 - a placeholder, not a password
        return "%s"
    if token == "%":  # noqa: S105 - a placeholder, not a password
        return "%%"
    if match.group(1) is not None:
        return f"%({match.group(1)})s"
    return token  # a quoted literal or name, or a cast: as written


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """Storage's SQL with psycopg's placeholders (quoted text left as it is)."""
    return _TOKEN.sub(_token, sql)


_item = tuple.__getitem__


class _Row(tuple[Any, ...]):
    """A row by position or by column name (the class of a query's columns, `_row_class`)."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}
    _names: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: Any) -> Any:
        if key.__class__ is str:  # (read per column of every row a page shows: kept lean)
            return _item(self, self._index[key])
        return _item(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[_Row]:
    index = {name: i for i, name in reversed(list(enumerate(names)))}  # the first of a name
    return type("Row", (_Row,), {"__slots__": (), "_index": index, "_names": names})


def _rows(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], _Row]:
    description = cursor.description or ()
    return _row_class(tuple(column.name for column in description))


class _BoolAsInt(Dumper):
    """True and False as 1 and 0, into the integer columns SQLite's booleans are."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _Number(Loader):
    """`numeric` (what SUM and AVG give) as an int when whole, else a float, as in SQLite."""

    def load(self, data: Any) -> Any:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class PgConn:
    """A psycopg connection (autocommit: transactions are explicit) as a storage `Conn`."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.notices = 0  # the outbox notices this trip's jobs asked for (`wakeups`)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Params = (), /) -> Cursor:
        if sql == "BEGIN IMMEDIATE":
            self.raw.execute("BEGIN")
            return self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        return self.raw.execute(translate(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), parameters)
        return cursor

    def close(self) -> None:
        self.raw.close()


def key_id(key: str) -> int:
    """A job's lock key as the second int of a two-int advisory lock (a 32-bit hash; two
    keys that share one only wait for each other, never wrongly pass)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), signed=True)


def begin_write(conn: Conn, *, alone: bool, keys: Iterable[str] = ()) -> None:
    """Begin a writer trip's transaction.

    SQLite: BEGIN IMMEDIATE (its one writer holds the database; keys mean nothing there).
    PostgreSQL: BEGIN plus the advisory write lock every node's writer takes: exclusively
    when one of the trip's jobs must run `alone` (no other node's trip runs meanwhile, as on
    SQLite), else shared (other nodes' trips of such jobs run at the same time), and then
    `keys`, exclusively, in one order (so two trips never wait on each other in a circle).
    A key stands for what two nodes' jobs must not do at once: take the same Message-ID in,
    change the same ticket, count the same address's login failures. The writer passes here
    only the keys of jobs it put off too often; the others' it tries (`try_keys`).
    """
    if not isinstance(conn, PgConn):
        conn.execute("BEGIN IMMEDIATE")
        return
    raw = conn.raw
    raw.execute("BEGIN")
    if alone:
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        return
    raw.execute("SELECT pg_advisory_xact_lock_shared(%s)", (WRITE_LOCK,))
    ids = sorted({key_id(key) for key in keys})
    if ids:  # unnest keeps the array's order: the locks are taken in ascending order
        raw.execute(
            "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::integer[]) AS k", (KEY_LOCKS, ids)
        )


def try_keys(conn: Conn, keys: Iterable[str]) -> bool:
    """In a trip alongside other nodes' (PostgreSQL): hold every one of `keys` till the
    transaction ends, unless another node's transaction holds one now (False; the keys
    this call got stay held, harmlessly, till the trip ends). Never waits. SQLite: True."""
    if not isinstance(conn, PgConn):
        return True
    ids = sorted({key_id(key) for key in keys})
    row = conn.raw.execute(
        "SELECT bool_and(pg_try_advisory_xact_lock(%s, k)) FROM unnest(%s::integer[]) AS k",
        (KEY_LOCKS, ids),
    ).fetchone()
    return bool(row and row[0])


def broken(conn: object) -> bool:
    """`conn` is a PostgreSQL connection that can no longer be used (the server went away,
    or it was closed): it must be replaced. Never true of an SQLite connection."""
    return isinstance(conn, PgConn) and (conn.raw.broken or conn.raw.closed)


def _settings(*, read_only: bool, application: str) -> dict[str, Any]:
    """What every connection is opened with: autocommit (transactions are explicit), rows by
    name, bounded waits; `read_only` for readers (the server refuses their writes)."""
    options = (
        f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    if read_only:
        options += " -c default_transaction_read_only=on"
    return {
        "autocommit": True,
        "row_factory": _rows,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "options": options,
        "application_name": application,
    }


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_dumper(bool, _BoolAsInt)
    raw.adapters.register_loader("numeric", _Number)


def connect(url: str, *, read_only: bool = False, application: str = "ticketmail") -> PgConn:
    """A new connection to `url` (its password from libpq's PGPASSWORD or ~/.pgpass)."""
    raw: psycopg.Connection[Any] = psycopg.connect(
        url, **_settings(read_only=read_only, application=application)
    )
    _configure(raw)
    return PgConn(raw)


def reader_pool(url: str, *, size: int) -> ConnectionPool[psycopg.Connection[Any]]:
    """Up to `size` read-only connections, opened when first needed; one found broken (the
    database restarted) is replaced when next taken."""
    return ConnectionPool(
        url,
        min_size=0,
        max_size=size,
        kwargs=_settings(read_only=True, application="ticketmail-reader"),
        configure=_configure,
        check=ConnectionPool.check_connection,
        timeout=CONNECT_TIMEOUT_SECONDS * 2,
        open=True,
    )


def _version(conn: PgConn) -> int:
    """The schema's version (0: an empty database)."""
    (has_meta,) = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: PgConn) -> None:
    """Bring the database to SCHEMA_VERSION; one node at a time (an advisory lock), the
    version read again once this one holds it; the whole schema in one transaction."""
    conn.raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        found = _version(conn)
        if found > SCHEMA_VERSION:
            raise TicketmailError(
                f"the database's schema is version {found}, newer than this ticketmail's "
                f"{SCHEMA_VERSION}: update ticketmail on this node"
            )
        if found == SCHEMA_VERSION:
            return
        if found != 0 and any(v not in PG_MIGRATIONS for v in range(found, SCHEMA_VERSION)):
            raise TicketmailError(f"no migration from schema version {found} on PostgreSQL")
        steps = (
            [PG_SCHEMA] if found == 0 else [PG_MIGRATIONS[v] for v in range(found, SCHEMA_VERSION)]
        )
        with conn.raw.transaction():
            for script in steps:  # several statements each: the simple protocol
                conn.raw.execute(script.encode())
            conn.raw.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        log.info("schema_migrated", backend="postgres", version=SCHEMA_VERSION, found=found)
    finally:
        conn.raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
