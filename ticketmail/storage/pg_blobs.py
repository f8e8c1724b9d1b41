"""Blobs in PostgreSQL: raw messages and attachments as rows of `blobs`, content-addressed.

On PostgreSQL every node reads and writes the same blobs (SPEC 10), so they live in the
database with the rows that name them. A put commits on a connection of the store's own
(autocommit) before it returns: the blob is durable before any row that refers to it is
written, and `sync` (a write job's flush on SQLite) has nothing left to do.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import psycopg

from ticketmail.storage import postgres
from ticketmail.storage.blobs import StoredBlob, check_digest

__all__ = ["PgBlobStore"]

T = TypeVar("T")

IDLE_CONNECTIONS = 4  # kept open between calls; more are opened while needed, then closed

_PRESENT = "SELECT sha256 FROM blobs WHERE sha256 = ANY(?)"
_INSERT = "INSERT INTO blobs(sha256, size, data) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
_READ = "SELECT data FROM blobs WHERE sha256 = ?"


class PgBlobStore:
    """The `blobs` table as a `Blobs`, for any thread: each call takes an idle connection
    (or opens one) and gives it back. A kept connection the database dropped meanwhile (it
    restarted) is replaced once within the call; every statement here may safely run twice."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._idle: list[postgres.PgConn] = []
        self._lock = threading.Lock()

    def _run(self, fn: Callable[[postgres.PgConn], T]) -> T:
        for kept in (True, False):
            with self._lock:
                conn = self._idle.pop() if kept and self._idle else None
            if conn is None:
                kept = False
                conn = postgres.connect(self._url, application="ticketmail-blobs")
            try:
                result = fn(conn)
            except psycopg.OperationalError:
                conn.close()
                if kept:
                    continue  # dropped while idle: once more on a new connection
                raise
            except BaseException:
                conn.close()
                raise
            with self._lock:
                if len(self._idle) < IDLE_CONNECTIONS:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
            return result
        raise AssertionError("unreachable: the second round raises or returns")

    def put(self, data: bytes) -> StoredBlob:
        return self.put_all([data])[0]

    def put_all(self, items: Iterable[bytes], *, defer_sync: bool = False) -> list[StoredBlob]:
        """Store the blobs not yet there in one transaction, committed before this returns
        (`defer_sync` changes nothing: there is nothing to sync later). A blob already
        stored is not sent again."""
        stored: list[StoredBlob] = []
        new: dict[str, bytes] = {}
        for data in items:
            digest = hashlib.sha256(data).hexdigest()
            stored.append(StoredBlob(digest, len(data)))
            new.setdefault(digest, data)
        if new:
            self._run(lambda conn: _insert(conn, new))
        return stored

    def sync(self) -> None:
        """Nothing to do: every put committed before it returned."""

    def get(self, sha256: str) -> bytes:
        check_digest(sha256)
        row = self._run(lambda conn: conn.execute(_READ, (sha256,)).fetchone())
        if row is None:
            raise FileNotFoundError(errno.ENOENT, f"no blob {sha256} in the database")
        return bytes(row[0])

    def file_of(self, sha256: str) -> None:
        """Never a file: the web serves `get`'s bytes."""
        check_digest(sha256)

    def sweep_temporary(self, *, older_than: float = 600.0) -> int:
        """Nothing half-written is ever left: a transaction commits whole or not at all."""
        return 0

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _insert(conn: postgres.PgConn, new: dict[str, bytes]) -> None:
    present = {row[0] for row in conn.execute(_PRESENT, (list(new),))}
    missing = [(digest, len(data), data) for digest, data in new.items() if digest not in present]
    if missing:
        with conn.raw.transaction():
            conn.executemany(_INSERT, missing)
