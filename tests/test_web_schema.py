"""The portal's tables come to an existing database by migration 2 -> 3 (its limits by
5 -> 6), keeping its data."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from desk_schema import undo_desk_schema, undo_schema_6

from ticketmail.storage import accounts, logins
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.store import CustomerRow, Store, UserRow

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

# SQLite only: these are migrations of SQLite's schema (undone with desk_schema's SQLite
# history, PRAGMA user_version); PostgreSQL's schema starts at version 13 and has none yet.
pytestmark = pytest.mark.sqlite_only
WEB_TABLES = ("customer_domains", "passwords", "registrations", "web_tokens", "web_sessions",
              "login_failures", "login_locks")  # fmt: skip


async def test_a_version_2_database_gets_the_portal_tables_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    """A database of version 2 (before the portal) opens as version 3 with its users kept
    and the portal's tables usable."""
    store = await Store.open(tmp_path)
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium")], now=NOW)
        await store.add_users([UserRow("anna@schule.example", "10042")], now=NOW)
    finally:
        await store.close()
    path = tmp_path / "ticketmail.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        undo_desk_schema(conn)
        for table in WEB_TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("PRAGMA user_version = 2")
    conn.close()

    store = await Store.open(tmp_path)
    try:
        assert [u.email for u in await store.list_users()] == ["anna@schule.example"]
        await store.write(lambda c: accounts.set_domains(c, "10042", ("schule.example",)))
        assert await store.write(lambda c: accounts.domains_of(c, "10042")) == ("schule.example",)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_a_version_5_database_keeps_its_login_locks_and_failures(tmp_path: Path) -> None:
    """Migration 5 -> 6 keeps a lock as the lock for browsers without a device cookie, and
    the failures as counting for their address and source."""
    store = await Store.open(tmp_path)
    await store.close()
    path = tmp_path / "ticketmail.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        undo_schema_6(conn)
        conn.execute(
            "INSERT INTO login_locks(email, until) VALUES ('anna@schule.example', ?)",
            ((NOW + timedelta(minutes=10)).isoformat(timespec="seconds"),),
        )
        conn.executemany(
            "INSERT INTO login_failures(email, ip, at) VALUES (?, '192.0.2.1', ?)",
            [("ben@schule.example", NOW.isoformat(timespec="seconds"))] * 3,
        )
    conn.close()

    store = await Store.open(tmp_path)
    try:
        limits = logins.LoginLimits(address_per_day=3, source_per_window=3)

        def blocked(conn: sqlite3.Connection, email: str) -> str | None:
            return logins.login_blocked(
                conn, email, source="192.0.2.9", device=None, now=NOW, limits=limits
            )

        assert await store.write(lambda c: blocked(c, "anna@schule.example")) == "address"
        assert await store.write(lambda c: blocked(c, "ben@schule.example")) == "address_day"
    finally:
        await store.close()
