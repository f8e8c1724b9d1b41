"""A backup of a live installation: on SQLite the database (its online backup), then the
blobs; on PostgreSQL `pg_dump --format=custom` of the database (the blobs are in it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ticketmail.errors import TicketmailError
from ticketmail.storage.blobs import BlobStore, fsync_dir
from ticketmail.storage.paths import DataPaths

__all__ = ["backup", "backup_database", "backup_postgres", "pg_dump_command"]

PG_ROOT = Path("/usr/lib/postgresql")  # Debian's binaries, one directory per major version
PG_DUMP_SECONDS = 6 * 3600  # bounded, and far above any dump ticketmail's data could need


def backup_database(source: Path, dest: Path) -> None:
    """A consistent copy of a live database through SQLite's online backup API."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            (result,) = dst.execute("PRAGMA integrity_check").fetchone()
            if result != "ok":
                raise TicketmailError(f"backup of {source} failed its integrity check: {result}")
        finally:
            dst.close()
    finally:
        src.close()


def backup(source: DataPaths, dest: DataPaths) -> int:
    """The database first, then the blobs (every blob it names is older); the files copied.

    Raises OSError when a file cannot be read or written."""
    dest.root.mkdir(parents=True, exist_ok=True)
    backup_database(source.database, dest.database)
    return BlobStore(source.blobs).copy_to(BlobStore(dest.blobs))


def pg_dump_command() -> Path:
    """Debian's newest pg_dump (a dump needs one at least as new as the server), else the
    one on PATH."""
    found = sorted(
        (int(p.parents[1].name), p) for p in PG_ROOT.glob("*/bin/pg_dump")
        if p.parents[1].name.isdigit()
    )  # fmt: skip
    if found:
        return found[-1][1]
    on_path = shutil.which("pg_dump")
    if on_path is None:
        raise TicketmailError(
            "backup: pg_dump not found (Debian: apt-get install postgresql-client)"
        )
    return Path(on_path)


def backup_postgres(url: str, dest: Path) -> int:
    """`pg_dump --format=custom` of the database at `url` into the new file `dest` (written
    beside it first, fsync'd, renamed into place); its size. The URL goes to pg_dump as an
    argument without its password, which (if the URL had one) goes in PGPASSWORD; otherwise
    libpq's PGPASSWORD or ~/.pgpass supply it as for every connection.

    Raises TicketmailError when pg_dump fails (its last lines), OSError when DEST cannot be
    written."""
    parts = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    environ = dict(os.environ)
    password = parts.pop("password", None)
    if password is not None:
        environ["PGPASSWORD"] = password
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.tmp-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        done = subprocess.run(
            [str(pg_dump_command()), "--format=custom", "--file", str(tmp),
             "--dbname", make_conninfo(**parts)],
            capture_output=True, text=True, env=environ, timeout=PG_DUMP_SECONDS, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            said = " | ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"
            raise TicketmailError(f"backup: pg_dump failed: {said}")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest.stat().st_size
