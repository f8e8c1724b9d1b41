"""The `storage` commands' work (SPEC 10): the schema's version (`storage migrate`), and
`storage copy`: an SQLite installation, every row and every blob file, into an empty
PostgreSQL database, in one transaction.

The schema is made there first (`postgres.migrate`), then each table's rows are copied in the
order of PostgreSQL's foreign keys (COPY, user triggers off: the ticket tally is copied, not
counted again), the blob files go into `blobs` (each checked against its name), identity
sequences are set past the copied ids, and each table's rows are counted on both sides.
SQLite's search index (its FTS5 tables and their bookkeeping) is not copied: every article
waits in `search_backlog`, and the nodes build PostgreSQL's index. A copy that fails leaves
the database as empty as it was.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ticketmail.errors import NotFoundError, RefusedError, TicketmailError, UsageError
from ticketmail.storage import postgres
from ticketmail.storage._pg_schema import TICKET_NUMBERS_FROM_ROWS
from ticketmail.storage.blobs import check_digest
from ticketmail.storage.dialect import Conn, is_postgres
from ticketmail.storage.paths import DataPaths

__all__ = [
    "CopiedTable",
    "CopyReport",
    "check_url",
    "copy_to_postgres",
    "database_name",
    "schema_version",
]

# SQLite's search index bookkeeping: rebuilt from the articles on PostgreSQL, never copied.
SEARCH_TABLES = frozenset({"search_backlog", "search_stale"})
BACKLOG = "search_backlog"
# Rows the migration writes itself (PostgreSQL's schema version), neither copied nor compared.
_ONLY = {"meta": "key <> 'schema_version'"}
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_OBJECTS = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY 1 LIMIT 3
"""
_COLUMNS = (
    "SELECT table_name, column_name, is_identity FROM information_schema.columns "
    "WHERE table_schema = current_schema()"
)
_FOREIGN_KEYS = (
    "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
    "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
)


@dataclass(frozen=True, slots=True)
class CopiedTable:
    """One table: its rows in SQLite (for search_backlog: the articles) and in PostgreSQL."""

    name: str
    source: int
    copied: int


@dataclass(frozen=True, slots=True)
class CopyReport:
    tables: tuple[CopiedTable, ...]
    blobs: int  # files copied into `blobs`
    blob_bytes: int
    seconds: float


class CopyError(TicketmailError):
    """The copy stopped (nothing of it was committed)."""


def schema_version(conn: Conn) -> int:
    """The version the database's schema is at (SQLite keeps it in user_version)."""
    if is_postgres(conn):
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_url(url: str) -> dict[str, str]:
    """The URL's parts (libpq's); UsageError when it is not one, or carries a password
    (which would show in the process list and the shell's history)."""
    try:
        parts = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.ProgrammingError:
        raise UsageError("--to: not a PostgreSQL URL (postgresql://USER@HOST/DBNAME)") from None
    if "password" in parts:
        raise UsageError(
            "--to: the URL must not carry a password (it would show in the process list "
            "and the shell history): set PGPASSWORD or put it in ~/.pgpass"
        )
    return parts


def database_name(url: str) -> str:
    """How messages name the database of `url` (never its password): DBNAME on HOST."""
    parts = check_url(url)
    return f"{parts.get('dbname', '(default)')} on {parts.get('host', 'localhost')}"


def _ident(name: str) -> str:
    """A table or column name of ticketmail's schema, quoted for SQL."""
    if not _NAME.fullmatch(name):
        raise CopyError(f"unexpected name in the SQLite schema: {name!r}")
    return f'"{name}"'


def _rows_of(table: str) -> str:
    """The table's rows the copy is about (a FROM clause)."""
    only = _ONLY.get(table)
    return _ident(table) + (f" WHERE {only}" if only else "")


def _source_tables(src: sqlite3.Connection) -> list[str]:
    """SQLite's tables to copy: not its own, not the FTS5 tables and their shadow tables,
    not the search index's bookkeeping."""
    rows = src.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
    ).fetchall()
    virtual = [name for name, sql in rows if sql.upper().startswith("CREATE VIRTUAL TABLE")]
    return [
        name
        for name, _ in rows
        if name not in virtual
        and name not in SEARCH_TABLES
        and not any(name.startswith(v + "_") for v in virtual)
    ]


def _columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in src.execute(f"PRAGMA table_info({_ident(table)})")]


def _ordered(tables: list[str], dst: postgres.PgConn) -> list[str]:
    """`tables` with every table after those its foreign keys point to."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for table in tables:
        sorter.add(table)
    for child, parent in dst.execute(_FOREIGN_KEYS).fetchall():
        if child in tables and parent in tables and child != parent:
            sorter.add(child, parent)
    return list(sorter.static_order())


def _blob_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.glob("??/??/*")):
        if not path.name.startswith(".tmp-") and len(path.name) == 64:
            yield path


def _refuse_non_empty(dst: postgres.PgConn, where: str) -> None:
    found = [row[0] for row in dst.execute(_OBJECTS).fetchall()]
    if found:
        raise RefusedError(
            f"the database {where} is not empty (it holds {', '.join(found)}"
            f"{', ...' if len(found) == 3 else ''}): storage copy only fills an empty database"
        )


def _open_source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise NotFoundError(f"no SQLite database at {path} (storage.data_dir)")
    src = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    src.execute("BEGIN")  # one snapshot for every table and count
    return src


def copy_to_postgres(source: DataPaths, url: str) -> CopyReport:
    """Copy the installation of `source` into the empty database at `url` (see the module).
    Raises NotFoundError (no SQLite database), RefusedError (a non-empty target), CopyError
    (the copy failed; nothing committed), psycopg.Error (the database unreachable)."""
    where = database_name(url)
    started = time.monotonic()
    src = _open_source(source.database)
    try:
        dst = postgres.connect(url, application="ticketmail-copy")
        try:
            _refuse_non_empty(dst, where)
            with dst.raw.transaction():
                # A large installation's COPY takes longer than a node's statements may.
                dst.execute("SET LOCAL statement_timeout = 0")
                dst.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
                postgres.migrate(dst)
                tables = _copy_rows(src, dst)
                blobs, size = _copy_blobs(source.blobs, dst)
        finally:
            dst.close()
    finally:
        src.close()
    return CopyReport(tuple(tables), blobs, size, time.monotonic() - started)


def _copy_rows(src: sqlite3.Connection, dst: postgres.PgConn) -> list[CopiedTable]:
    """Every table's rows, then the backlog, the sequences, and the counts compared."""
    target: dict[str, dict[str, bool]] = {}
    for table, column, identity in dst.execute(_COLUMNS).fetchall():
        target.setdefault(table, {})[column] = identity == "YES"
    tables = _source_tables(src)
    for table in tables:
        missing = [c for c in _columns(src, table) if c not in target.get(table, {})]
        if table not in target or missing:
            what = f"table {table}" if table not in target else f"{table}: {', '.join(missing)}"
            raise CopyError(f"PostgreSQL's schema has no place for SQLite's {what}")
    order = _ordered(tables, dst)
    for table in order:
        dst.execute(f"ALTER TABLE {_ident(table)} DISABLE TRIGGER USER")
    for table in order:
        columns = ", ".join(_ident(c) for c in _columns(src, table))
        rows = src.execute(f"SELECT {columns} FROM {_rows_of(table)}")  # noqa: S608 - our names
        with dst.raw.cursor().copy(f"COPY {_ident(table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    for table in order:
        dst.execute(f"ALTER TABLE {_ident(table)} ENABLE TRIGGER USER")
    dst.execute(f"INSERT INTO {BACKLOG}(article) SELECT id FROM articles")  # noqa: S608
    for table, kinds in target.items():
        for column in (c for c, identity in kinds.items() if identity):
            dst.execute(
                f"SELECT setval(pg_get_serial_sequence(?, ?), "  # noqa: S608 - our names
                f"(SELECT COALESCE(MAX({_ident(column)}), 0) + 1 FROM {_ident(table)}), false)",
                (table, column),
            )
    dst.raw.execute(TICKET_NUMBERS_FROM_ROWS)
    counted = [(t, t) for t in sorted(tables)] + [(BACKLOG, "articles")]
    copied: list[CopiedTable] = []
    for table, source_table in counted:
        ((have,),) = src.execute(f"SELECT COUNT(*) FROM {_rows_of(source_table)}").fetchall()  # noqa: S608
        (got,) = dst.execute(f"SELECT COUNT(*) FROM {_rows_of(table)}").fetchone()  # noqa: S608
        if have != got:
            raise CopyError(f"{table}: {have} rows in SQLite but {got} in PostgreSQL")
        copied.append(CopiedTable(table, int(have), int(got)))
    return copied


def _copy_blobs(root: Path, dst: postgres.PgConn) -> tuple[int, int]:
    """Every blob file into `blobs`, its content checked against its name; (files, bytes)."""
    files = size = 0
    with dst.raw.cursor().copy("COPY blobs (sha256, size, data) FROM STDIN") as copy:
        for path in _blob_files(root):
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != check_digest(path.name):
                raise CopyError(f"{path}: its content does not match its name (damaged)")
            copy.write_row((path.name, len(data), data))
            files += 1
            size += len(data)
    (got,) = dst.execute("SELECT COUNT(*) FROM blobs").fetchone()
    if got != files:
        raise CopyError(f"blobs: {files} files but {got} rows in PostgreSQL")
    return files, size
