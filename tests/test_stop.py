"""A stop always ends (SPEC 8.4): closing waits a bounded time for what hangs, the writer closes
whatever the readers do, and a last-resort exit ends the process after a deadline."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import database_target, eventually
from structlog.testing import capture_logs

from ticketmail.errors import TicketmailError
from ticketmail.storage import database
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn
from ticketmail.web.reader import Reader


@pytest.mark.sqlite_only
async def test_the_writer_closes_when_a_reader_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader busy past READER_CLOSE_SECONDS does not keep the writer open: the database
    closes (what was written is on disk), the late reader is logged and ends on its own.
    (SQLite only: the reader is held inside its query by an SQLite user function on
    aiosqlite's connection; PostgreSQL's readers are a psycopg pool.)"""
    monkeypatch.setattr(database, "READER_CLOSE_SECONDS", 0.2)
    db = await Database.open(tmp_path / "t.sqlite3")
    await db.write(lambda conn: conn.execute("CREATE TABLE t (x)"))
    await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    reading, release = threading.Event(), threading.Event()

    def hold(_: object) -> int:  # runs on the reader's own thread, inside its query
        reading.set()
        release.wait(10)
        return 1

    async def stuck() -> None:
        async with db.reading() as conn:
            await conn.create_function("hold", 1, hold)
            await conn.execute_fetchall("SELECT hold(1)")

    task = asyncio.create_task(stuck())
    try:
        await eventually(reading.is_set, what="the read under way")
        started = time.monotonic()
        with capture_logs() as events:
            await asyncio.wait_for(db.close(), 5)
        assert time.monotonic() - started < 2
        assert [e["event"] for e in events] == ["reader_close_failed"]
        with pytest.raises(TicketmailError):
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)"))
    finally:
        release.set()
        await asyncio.wait_for(task, 10)
    check = sqlite3.connect(tmp_path / "t.sqlite3")
    try:
        assert check.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        check.close()


async def test_the_web_readers_close_without_blocking_the_loop(tmp_path: Path) -> None:
    """Closing the portal's reader pool waits for a read under way for a bounded time, on
    another thread: the event loop keeps running meanwhile."""
    reader = Reader(database_target(tmp_path))
    reading, release = threading.Event(), threading.Event()

    def hold(conn: Conn) -> None:
        reading.set()
        release.wait(10)

    read = asyncio.ensure_future(reader(hold))
    try:
        await eventually(reading.is_set, what="the read under way")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(tick())
        started = time.monotonic()
        with capture_logs() as events:
            await reader.close(seconds=0.3)
        ticking.cancel()
        assert time.monotonic() - started < 1.5
        assert ticks >= 5, "the event loop stood still while the pool closed"
        assert [e["event"] for e in events] == ["web_reader_close_late"]
    finally:
        release.set()
        await asyncio.wait_for(read, 10)
        await reader.close()  # the late read is over: its connection is closed now


def test_a_stop_past_its_deadline_ends_the_process() -> None:
    """The last resort: once the stop's deadline is over the process exits, whatever runs."""
    code = (
        "import threading, time\n"
        "from ticketmail.daemon import _exit_after\n"
        "_exit_after(0.5)\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"  # never ends by itself
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 70, result.stderr
    assert "daemon_stop_overdue" in result.stdout + result.stderr
