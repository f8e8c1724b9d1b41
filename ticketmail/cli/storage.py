"""The `storage` commands (SPEC 10): bring the schema up to date, move to PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TypeVar

from ticketmail.cli._common import Verbs, plural, print_json, print_table
from ticketmail.config import Config
from ticketmail.errors import TicketmailError
from ticketmail.storage.dialect import DATABASE_ERRORS
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.store import Store

T = TypeVar("T")


def cmd_storage_migrate(config: Config, args: argparse.Namespace) -> int:
    """Open the database (which migrates it, one node at a time) and close it again."""
    from ticketmail.storage.install import schema_version

    target = config.database

    async def run() -> int:
        store = await Store.open(config.data_dir, target)
        try:
            return await store.write(schema_version)
        finally:
            await store.close()

    version = _on_database(lambda: asyncio.run(run()))
    where = "PostgreSQL" if target.postgres else str(target.path)
    if args.json:
        print_json({"backend": target.backend, "schema_version": version})
    else:
        print(f"schema of {where} at version {version}")
    return 0


def cmd_storage_copy(config: Config, args: argparse.Namespace) -> int:
    """storage.data_dir's SQLite installation, rows and blob files, into an empty PostgreSQL
    database at --to (see storage.install)."""
    from ticketmail.storage.install import check_url, copy_to_postgres, database_name

    check_url(args.to)  # before anything else: a URL with a password is refused at once
    sqlite = DatabaseTarget("sqlite", config.paths.database)

    async def bring_up_to_date() -> None:
        if sqlite.path.is_file():  # (copy_to_postgres says when it is not)
            store = await Store.open(config.data_dir, sqlite)
            await store.close()

    asyncio.run(bring_up_to_date())
    report = _on_database(lambda: copy_to_postgres(config.paths, args.to))
    if args.json:
        print_json(
            {
                "tables": {t.name: {"source": t.source, "copied": t.copied} for t in report.tables},
                "blobs": {"files": report.blobs, "bytes": report.blob_bytes},
                "seconds": round(report.seconds, 3),
            }
        )
        return 0
    print_table(
        [(t.name, t.source, t.copied) for t in report.tables], ("TABLE", "SQLITE", "COPIED")
    )
    rows = sum(t.copied for t in report.tables)
    print(
        f"copied {plural(rows, 'row')} and {plural(report.blobs, 'file')} "
        f"({report.blob_bytes} bytes) into {database_name(args.to)} in {report.seconds:.1f} s; "
        "counts checked; the search index is built by the nodes (every article queued)"
    )
    return 0


def _on_database(work: Callable[[], T]) -> T:
    """`work()`, a database that cannot be reached (or refuses) said in one line."""
    try:
        return work()
    except DATABASE_ERRORS as exc:
        said = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise TicketmailError(f"database: {type(exc).__name__}: {said}") from None


def register(verbs: Verbs) -> None:
    storage = verbs.group("storage", "the database: migrate, copy to PostgreSQL")
    verbs.add(storage, "migrate", cmd_storage_migrate, "bring the schema up to date", listing=True)
    p = verbs.add(
        storage,
        "copy",
        cmd_storage_copy,
        "copy the SQLite installation into an empty PostgreSQL database",
        listing=True,
    )
    p.add_argument(
        "--to",
        metavar="URL",
        required=True,
        help="postgresql://USER@HOST/DBNAME (no password: PGPASSWORD or ~/.pgpass)",
    )
