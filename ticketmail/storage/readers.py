"""A read-only connection for a thread that reads (the web's pages, admission's sender check)."""

from __future__ import annotations

import sqlite3

from ticketmail.storage import postgres
from ticketmail.storage.dialect import Conn
from ticketmail.storage.paths import DatabaseTarget

__all__ = ["open_reader"]

BUSY_TIMEOUT_MS = 10_000


def open_reader(target: DatabaseTarget) -> Conn:
    """A new read-only connection to `target`: it sees committed data only, never writes."""
    if target.postgres:
        return postgres.connect(target.url, read_only=True)
    conn = sqlite3.connect(target.path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    return conn
