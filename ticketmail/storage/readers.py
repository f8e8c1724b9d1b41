"""A read-only connection for a thread that reads (the web's pages, admission's sender check),
and `ThreadReaders`: one per thread, a broken one replaced."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ticketmail.storage import postgres
from ticketmail.storage.availability import Availability, DatabaseUnavailable, unavailable
from ticketmail.storage.dialect import Conn
from ticketmail.storage.paths import DatabaseTarget

__all__ = ["ThreadReaders", "open_reader"]

BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")


def open_reader(target: DatabaseTarget) -> Conn:
    """A new read-only connection to `target`: it sees committed data only, never writes."""
    if target.postgres:
        return postgres.connect(target.url, read_only=True)
    conn = sqlite3.connect(target.path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    return conn


class ThreadReaders:
    """`run(fn, ...)`: `fn(conn, ...)` on the calling thread's own read-only connection,
    opened on its first read. On PostgreSQL a connection found broken (the server restarted)
    is dropped and the read runs once more on a new one; when none can be opened the database
    is away: `availability` (if given) goes down and DatabaseUnavailable is raised. While
    `availability` says the database is away, reads fail at once."""

    def __init__(self, target: DatabaseTarget, availability: Availability | None = None) -> None:
        self.target = target
        self.availability = availability
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Conn] = []

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self.availability is not None:
            self.availability.check()
        conn = self._conn()
        try:
            return fn(conn, *args, **kwargs)
        except Exception as exc:
            if not postgres.broken(conn):
                raise
            self._drop(conn)
            error = exc
        conn = self._conn()  # an old connection broke: the read again, on a new one
        try:
            return fn(conn, *args, **kwargs)
        except Exception as exc:
            if not postgres.broken(conn):
                raise
            self._drop(conn)
            raise self._away(exc) from error

    def _conn(self) -> Conn:
        """This thread's connection, opened now if it has none."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = open_reader(self.target)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                raise self._away(exc) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _away(self, exc: Exception) -> DatabaseUnavailable:
        if self.availability is not None:
            self.availability.lost(f"{type(exc).__name__}: {exc}")
        return DatabaseUnavailable("the database is unavailable")

    def _drop(self, conn: Conn) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with contextlib.suppress(Exception):  # broken already: nothing left to close
            conn.close()

    def take_all(self) -> list[Conn]:
        """Every thread's connection, for closing; the threads open new ones should they read."""
        with self._lock:
            connections, self._connections = self._connections, []
        return connections
