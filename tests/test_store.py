"""The store's own rules, on a real database (either backend): ticket numbers, the writer's
group commit and its jobs (flushes, failures, cancellation, close), the read-only reads;
SQLite's checkpoints and migrations."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import database_target, on_postgres
from desk_schema import undo_desk_schema

from ticketmail.errors import TicketmailError
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.dialect import DATABASE_ERRORS, Conn
from ticketmail.storage.mails import next_ticket_number, record_mail
from ticketmail.storage.paths import DB_NAME
from ticketmail.storage.readers import open_reader
from ticketmail.storage.records import MessageRecord, NewTicket
from ticketmail.storage.store import CustomerRow, Store

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WAIT_SECONDS = 10.0  # the bound of every wait for the writer thread
_ids = itertools.count(1)


class Rollback(Exception):
    pass


def _message(ticket: int | None) -> MessageRecord:
    return MessageRecord(
        envelope_from="anna@schule.example", envelope_to=("support@stueber.de",),
        header_from="anna@schule.example", message_id=f"<{next(_ids)}@schule.example>",
        raw_sha256="0" * 64, size=1, outcome="ticket_created", reason="new", ticket=ticket,
        reply="250 2.0.0 Ok",
    )  # fmt: skip


def _open_ticket_job(first_number: int, *, fail: bool = False) -> Callable[[Conn], int]:
    """A new ticket the way intake opens one: the number taken and the ticket written with
    the mail's record, in one job; `fail`: an error after both."""

    def job(conn: Conn) -> int:
        number = next_ticket_number(conn, first_number=first_number)
        ticket = NewTicket(number, "10042", "anna@schule.example", "Drucker", False, None)
        record_mail(conn, _message(number), new_ticket=ticket, now=NOW)
        if fail:
            raise Rollback
        return number

    return job


async def test_ticket_numbers_start_at_first_number_and_are_never_reused(tmp_path: Path) -> None:
    """Numbers count up from tickets.first_number; one handed out is never handed out again
    (SQLite hands out a rolled-back job's number again, PostgreSQL's sequence leaves a gap:
    neither number was ever a ticket's)."""
    store = await _open(tmp_path / "var")
    postgres = store.target.postgres
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        assert await store.write(_open_ticket_job(500)) == 500
        assert await store.write(_open_ticket_job(500)) == 501
        with pytest.raises(Rollback):  # rolled back: the ticket never existed
            await store.write(_open_ticket_job(500, fail=True))
        assert await store.write(_open_ticket_job(500)) == (503 if postgres else 502)
        assert await store.write(_open_ticket_job(1000)) == 1000  # a higher first_number wins
        assert await store.write(_open_ticket_job(500)) == 1001  # a lower one never goes back
        numbers = await store.db.fetchall("SELECT number FROM tickets ORDER BY number")
        assert [r[0] for r in numbers] == [500, 501, 503 if postgres else 502, 1000, 1001]
    finally:
        await store.close()


# --- group commit -------------------------------------------------------------------------------


async def _open(data_dir: Path) -> Store:
    """The store of `data_dir` on the backend under test."""
    return await Store.open(data_dir, database_target(data_dir))


def _committed(store: Store, message_id: str) -> bool:
    """Read on a connection of its own, as another process would: committed rows only."""
    conn = open_reader(store.target)
    try:
        row = conn.execute("SELECT 1 FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    finally:
        conn.close()
    return row is not None


def _messages(store: Store) -> int:
    """How many message rows are committed (read as another process would)."""
    conn = open_reader(store.target)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    finally:
        conn.close()
    return int(count)


REQUEST = contextvars.ContextVar("request", default="none")


def _insert(message: MessageRecord, *, fail: bool = False) -> Callable[[Conn], str]:
    """A job: the message row, then (fail) an error after it; its answer names the context."""

    def run(conn: Conn) -> str:
        record_mail(conn, message, now=NOW)
        if fail:
            raise Rollback
        return f"{message.message_id} in {REQUEST.get()}"

    return run


def _work() -> None:
    """A caller's own work before it asks (a mail's parsing, say), on the event loop: longer
    than the GIL's switch interval, so the writer thread could run meanwhile."""
    end = time.perf_counter() + 2 * sys.getswitchinterval()
    while time.perf_counter() < end:
        pass


async def _write(
    store: Store, name: str, *, fail: bool = False, work: bool = False
) -> tuple[str, bool]:
    """One job, asked for in a context of its own (`work`: after working a while); (its
    answer, committed on return)."""
    REQUEST.set(name)
    message = _message(None)
    if work:
        _work()
    answer = await store.write(_insert(message, fail=fail))
    return answer, _committed(store, message.message_id)


async def _traced(store: Store) -> list[str] | None:
    """Every statement the writer's connection runs from now on, as SQLite reports it (None
    on PostgreSQL, which has no trace callback: there the store's own count says it)."""
    if on_postgres():
        return None
    statements: list[str] = []
    await store.write(lambda conn: conn.set_trace_callback(statements.append))
    return statements


async def test_jobs_queued_together_share_one_commit_and_each_is_durable_on_return(
    tmp_path: Path,
) -> None:
    """Twenty jobs asked for in the same turn of the event loop (each caller working a while
    first): one COMMIT, each answer given only when its row can be read from another
    connection, each run in the context it was asked in."""
    store = await _open(tmp_path / "var")
    try:
        statements = await _traced(store)
        before, counted = statements.count("COMMIT") if statements else 0, store.commits
        results = await asyncio.gather(*(_write(store, f"r{i}", work=True) for i in range(20)))
        if statements is not None:
            assert statements.count("COMMIT") - before == 1
        assert store.commits - counted == 1
        for i, (answer, visible) in enumerate(results):
            assert visible
            assert answer.endswith(f" in r{i}")
        assert (await _write(store, "alone"))[1]  # nobody else: committed at once, on its own
        if statements is not None:
            assert statements.count("COMMIT") - before == 2
        assert store.commits - counted == 2
    finally:
        await store.close()


async def test_a_failing_job_among_others_undoes_only_its_own_work(tmp_path: Path) -> None:
    """Three at once, the middle one fails: its exception, its row gone; the others' rows
    committed on return, all with one COMMIT."""
    store = await _open(tmp_path / "var")
    try:
        before = store.commits
        results = await asyncio.gather(
            _write(store, "a"), _write(store, "b", fail=True), _write(store, "c"),
            return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[1], Rollback)
        assert [r[1] for r in (results[0], results[2]) if isinstance(r, tuple)] == [True, True]
        assert store.commits - before == 1
        assert _messages(store) == 2
    finally:
        await store.close()


async def test_a_flush_runs_once_per_trip_and_a_failed_one_stops_its_jobs(
    tmp_path: Path,
) -> None:
    """Jobs that name a flush (the blobs' sync): it runs once for all of them, before the
    transaction. When it raises OSError, those jobs raise it and write nothing; a job of
    the same trip that names no flush still commits."""
    store = await _open(tmp_path / "var")
    try:
        calls: list[str] = []

        def sync() -> None:
            calls.append("sync")

        def broken() -> None:
            raise OSError(5, "Input/output error")

        def write(flush: Callable[[], None] | None) -> Awaitable[str]:
            return store.write(_insert(_message(None)), flush=flush)

        answers = await asyncio.gather(
            write(sync), write(sync), write(broken), write(None), return_exceptions=True
        )
        assert calls == ["sync"]
        assert isinstance(answers[2], OSError)
        assert [isinstance(a, str) for a in answers] == [True, True, False, True]
        assert _messages(store) == 3
    finally:
        await store.close()


class _Held:
    """A job that writes its row, then keeps the writer thread until `release` is set."""

    def __init__(self, message: MessageRecord, log: list[str]) -> None:
        self.message = message
        self.log = log
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Conn) -> str:
        record_mail(conn, self.message, now=NOW)
        self.started.set()
        if not self.release.wait(WAIT_SECONDS):
            raise AssertionError("never released")
        self.log.append("held")
        return "held"


async def _holding(store: Store, held: _Held) -> asyncio.Task[str]:
    """The held job's task, once the writer thread runs it."""
    task = asyncio.create_task(store.write(held))
    assert await asyncio.to_thread(held.started.wait, WAIT_SECONDS), "the job never started"
    return task


async def _queued(store: Store, job: Callable[[Conn], Any]) -> asyncio.Task[Any]:
    """A task whose job is in the writer's queue when this returns."""
    asked = asyncio.Event()

    async def write() -> Any:
        asked.set()
        return await store.write(job)  # queued before this first awaits

    task = asyncio.create_task(write())
    await asked.wait()
    return task


def _appears_while_blocked(store: Store, message_id: str) -> bool:
    """Called on the event loop, which it blocks: does the row get committed meanwhile
    (looked for up to 5 s)?"""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _committed(store, message_id):
            return True
        time.sleep(0.01)
    return False


async def test_jobs_queued_during_a_trip_are_committed_next_without_the_event_loop(
    tmp_path: Path,
) -> None:
    """A job queued while a trip runs goes to disk right after that trip's COMMIT, on the
    writer thread: it does not wait for the event loop (blocked here) to come round."""
    store = await _open(tmp_path / "var")
    try:
        before = store.commits
        held, second = _Held(_message(None), []), _message(None)
        one = await _holding(store, held)
        two = await _queued(store, _insert(second))
        held.release.set()
        assert _appears_while_blocked(store, second.message_id)
        assert await one == "held"
        assert (await two).startswith(second.message_id)
        assert store.commits - before == 2
    finally:
        await store.close()


async def test_jobs_run_in_the_order_they_were_queued(tmp_path: Path) -> None:
    """Jobs queued while the writer is busy run after it, in the order they were asked for."""
    store = await _open(tmp_path / "var")
    try:
        order: list[str] = []
        held = _Held(_message(None), order)
        first = await _holding(store, held)
        later = [await _queued(store, lambda conn, n=n: order.append(n)) for n in "abcd"]
        held.release.set()
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=WAIT_SECONDS)
        assert order == ["held", "a", "b", "c", "d"]
    finally:
        await store.close()


# --- cancellation -------------------------------------------------------------------------------


async def test_a_job_whose_caller_is_cancelled_while_it_waits_never_runs(tmp_path: Path) -> None:
    """Cancelled while still queued: the job is taken back and never runs; the jobs around
    it are not disturbed."""
    store = await _open(tmp_path / "var")
    try:
        ran: list[str] = []
        held, dropped = _Held(_message(None), ran), _message(None)

        def job(conn: Conn) -> None:
            ran.append("dropped")
            record_mail(conn, dropped, now=NOW)

        first = await _holding(store, held)
        waiting = await _queued(store, job)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        held.release.set()
        assert await first == "held"
        assert (await _write(store, "after"))[1]  # a trip after the one it would have been in
        assert ran == ["held"]
        assert not _committed(store, dropped.message_id)
        assert _messages(store) == 2
    finally:
        await store.close()


async def test_a_job_whose_caller_is_cancelled_while_it_runs_is_committed_whole(
    tmp_path: Path,
) -> None:
    """Cancelled once the writer has taken it: the job still runs to its end and both of its
    rows are committed, never one without the other."""
    store = await _open(tmp_path / "var")
    try:
        started, release = threading.Event(), threading.Event()
        rows = (_message(None), _message(None))

        def job(conn: Conn) -> None:
            record_mail(conn, rows[0], now=NOW)
            started.set()
            if not release.wait(WAIT_SECONDS):
                raise AssertionError("never released")
            record_mail(conn, rows[1], now=NOW)

        task = asyncio.create_task(store.write(job))
        assert await asyncio.to_thread(started.wait, WAIT_SECONDS)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await store.write(lambda conn: None)  # runs after the cancelled job's trip
        assert [_committed(store, m.message_id) for m in rows] == [True, True]
    finally:
        await store.close()


async def test_closing_commits_what_was_queued_and_refuses_later_jobs(tmp_path: Path) -> None:
    """`close` waits for the jobs queued before it (each committed and answered); a job
    asked for after it is refused with a clear error."""
    store = await _open(tmp_path / "var")
    held, queued = _Held(_message(None), []), _message(None)
    first = await _holding(store, held)
    second = await _queued(store, _insert(queued))
    closing = asyncio.create_task(store.close())
    held.release.set()
    await asyncio.wait_for(closing, timeout=WAIT_SECONDS)
    assert await first == "held"
    assert (await second).startswith(queued.message_id)
    assert _committed(store, queued.message_id)
    with pytest.raises(TicketmailError, match="closed"):
        await store.write(lambda conn: None)


# --- reads --------------------------------------------------------------------------------------


async def test_reads_see_committed_data_on_connections_that_cannot_write(tmp_path: Path) -> None:
    """A read after a job returns sees its row; a statement that writes, sent down the read
    path, is refused by the database (the connection is read-only) and changes nothing."""
    store = await _open(tmp_path / "var")
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        assert [c.number for c, _ in await store.list_customers()] == ["10042"]
        with pytest.raises(DATABASE_ERRORS, match=r"readonly|read-only"):
            await store.db.fetchall("DELETE FROM customers")
        assert [c.number for c, _ in await store.list_customers()] == ["10042"]
    finally:
        await store.close()


# --- checkpoints --------------------------------------------------------------------------------


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database), read from the WAL
    index in `-shm` (mxFrame of the header, nBackfill of the checkpoint info after the
    header's two copies), as SQLite keeps them in native byte order."""
    shm = Path(f"{path}-shm").read_bytes()
    (max_frame,) = struct.unpack_from("=I", shm, 16)
    (backfilled,) = struct.unpack_from("=I", shm, 96)
    return max_frame, backfilled


@pytest.mark.sqlite_only
async def test_the_daemons_store_copies_the_wal_into_the_database_in_the_background(
    tmp_path: Path,
) -> None:
    """With start_checkpoints, a few commits (far below any size that makes a COMMIT
    checkpoint) are copied into the database soon after, by the store itself. (SQLite only:
    its WAL and -shm files.)"""
    store = await _open(tmp_path / "var")
    try:
        await store.start_checkpoints()
        for i in range(20):
            await _write(store, f"w{i}")
        frames, copied = _wal_frames(store.path)
        assert frames > copied  # nothing has checkpointed them yet
        deadline = time.monotonic() + 4  # against CHECKPOINT_SECONDS of 0.25
        while copied < frames and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            frames, copied = _wal_frames(store.path)
        assert copied == frames > 0
    finally:
        await store.close()


# --- migrations ---------------------------------------------------------------------------------


def _make_version_1(path: Path) -> None:
    """Turn a new database back into what version 1 had: the outbox's count indexes
    without `automatic`."""
    with sqlite3.connect(path) as conn:
        undo_desk_schema(conn)
        conn.executescript(
            "DROP INDEX outbox_recipient; CREATE INDEX outbox_recipient "
            "ON outbox(recipient, created_at); DROP INDEX outbox_ticket; "
            "CREATE INDEX outbox_ticket ON outbox(ticket, created_at); PRAGMA user_version = 1;"
        )
    conn.close()


def _index_columns(path: Path, index: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[2] for row in conn.execute(f"PRAGMA index_info({index})")]
    finally:
        conn.close()


@pytest.mark.sqlite_only
async def test_a_version_1_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    """Opening a version 1 database brings it to version 2 (the count indexes cover
    `automatic`), its tickets kept and its numbering going on. (SQLite only: a migration of
    SQLite's schema, its query plan.)"""
    store = await Store.open(tmp_path)
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        number = await store.write(_open_ticket_job(100001))
    finally:
        await store.close()
    path = tmp_path / DB_NAME
    _make_version_1(path)
    assert _index_columns(path, "outbox_recipient") == ["recipient", "created_at"]

    store = await Store.open(tmp_path)
    await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # the latest
        assert conn.execute("SELECT number FROM tickets").fetchall() == [(number,)]
        # The auto-reply count per address is answered from the index alone.
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM outbox WHERE recipient = ? "
                "AND created_at >= ? AND automatic = 1",
                ("anna@schule.example", "2026-11-22"),
            )
        )
    finally:
        conn.close()
    assert "COVERING INDEX outbox_recipient" in plan
    assert _index_columns(path, "outbox_recipient") == ["recipient", "automatic", "created_at"]
    assert _index_columns(path, "outbox_ticket") == ["ticket", "automatic", "created_at"]
    store = await Store.open(tmp_path)
    try:
        assert await store.write(_open_ticket_job(100001)) == number + 1
    finally:
        await store.close()
