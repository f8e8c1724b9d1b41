"""A backup of a live data directory: the database (SQLite's online backup), then the blobs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ticketmail.errors import TicketmailError
from ticketmail.storage.blobs import BlobStore
from ticketmail.storage.paths import DataPaths

__all__ = ["backup", "backup_database"]


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
