"""The store's own rules, on a real SQLite file: ticket numbers, group commit, migrations."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import sqlite3
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from desk_schema import undo_desk_schema

from ticketmail.storage.store import CustomerRow, MessageRecord, NewTicket, Step, Store, Transaction

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
_ids = itertools.count(1)


class Rollback(Exception):
    pass


async def _facts_number(tx: Transaction, first_number: int) -> int:
    message_id = f"<{next(_ids)}@schule.example>"
    facts = await tx.call(
        lambda conn: Step(conn).mail_facts(
            message_id=message_id, header_from="anna@schule.example", numbers=(),
            references=(), since=NOW, now=NOW, first_number=first_number,
        )
    )  # fmt: skip
    return facts.next_number


async def _record_ticket(tx: Transaction, number: int) -> None:
    ticket = NewTicket(number, "10042", "anna@schule.example", "Drucker", False, None)
    message = _message(number)
    await tx.call(lambda conn: Step(conn).record_mail(message, new_ticket=ticket, now=NOW))


async def _open_ticket(store: Store, first_number: int) -> int:
    """A new ticket the way intake opens one: the number read with the mail's facts, the
    ticket written with the mail's record, in one transaction."""
    async with store.transaction() as tx:
        number = await _facts_number(tx, first_number)
        await _record_ticket(tx, number)
    return number


def _message(ticket: int | None) -> MessageRecord:
    return MessageRecord(
        envelope_from="anna@schule.example", envelope_to=("support@stueber.de",),
        header_from="anna@schule.example", message_id=f"<{next(_ids)}@schule.example>",
        raw_sha256="0" * 64, size=1, outcome="ticket_created", reason="new", ticket=ticket,
        reply="250 2.0.0 Ok",
    )  # fmt: skip


async def _allocate_then_fail(store: Store, first_number: int, *, expected: int) -> None:
    async with store.transaction() as tx:
        number = await _facts_number(tx, first_number)
        assert number == expected
        await _record_ticket(tx, number)
        raise Rollback


async def test_ticket_numbers_start_at_first_number_and_are_never_reused(tmp_path: Path) -> None:
    """Numbers count up from tickets.first_number; one handed out is never handed out again."""
    store = await Store.open(tmp_path / "var")
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        assert await _open_ticket(store, 500) == 500
        assert await _open_ticket(store, 500) == 501
        async with store.transaction() as tx:  # only read: not handed out
            assert await _facts_number(tx, 500) == 502
        assert await _open_ticket(store, 500) == 502
        with pytest.raises(Rollback):  # rolled back: never handed out
            await _allocate_then_fail(store, 500, expected=503)
        assert await _open_ticket(store, 500) == 503
        assert await _open_ticket(store, 1000) == 1000  # a higher first_number wins
        assert await _open_ticket(store, 500) == 1001  # a lower one never goes back
    finally:
        await store.close()


# --- group commit -------------------------------------------------------------------------------


def _committed(path: Path, message_id: str) -> bool:
    """Read on a connection of its own, as another process would: committed rows only."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT 1 FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    finally:
        conn.close()
    return row is not None


def _messages(path: Path) -> int:
    """How many message rows are committed (read as another process would)."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    finally:
        conn.close()
    return int(count)


async def _record(store: Store, *, fail: bool = False) -> tuple[str, bool]:
    """One transaction writing one message row; (its Message-ID, committed on return)."""
    message = _message(None)
    async with store.transaction(lazy=True) as tx:
        await tx.call(lambda conn: Step(conn).record_mail(message, now=NOW))
        if fail:
            raise Rollback
    return message.message_id, _committed(store.path, message.message_id)


async def test_concurrent_transactions_share_one_commit_and_each_is_durable_on_return(
    tmp_path: Path,
) -> None:
    """Twenty transactions waiting for each other: one COMMIT for all, and none returns
    before its work can be read from another connection."""
    store = await Store.open(tmp_path / "var")
    try:
        before = store.commits
        results = await asyncio.gather(*(_record(store) for _ in range(20)))
        assert all(visible for _, visible in results)
        assert store.commits - before == 1
        alone = await _record(store)  # nobody waiting: committed at once, on its own
        assert alone[1]
        assert store.commits - before == 2
    finally:
        await store.close()


async def _held_open(store: Store, release: asyncio.Event) -> asyncio.Task[bool]:
    """A task inside a transaction that has written a row and waits for `release` to end
    it; the task's result: the row was committed when the transaction returned."""
    inside = asyncio.Event()
    message = _message(None)

    async def transaction() -> bool:
        async with store.transaction(lazy=True) as tx:
            await tx.call(lambda conn: Step(conn).record_mail(message, now=NOW))
            inside.set()
            await release.wait()
        return _committed(store.path, message.message_id)

    task = asyncio.create_task(transaction())
    await asyncio.wait_for(inside.wait(), timeout=5)
    return task


async def test_a_batch_left_open_for_a_task_that_is_then_cancelled_is_still_committed(
    tmp_path: Path,
) -> None:
    """A ends while B waits for the lock, so A leaves the COMMIT to B; B is cancelled before
    it gets the lock. A must still return, committed (nobody else ever comes)."""
    store = await Store.open(tmp_path / "var")
    try:
        release = asyncio.Event()
        task_a = await _held_open(store, release)
        task_b = asyncio.create_task(_record(store))
        for _ in range(5):  # B queues for the lock
            await asyncio.sleep(0)
        release.set()
        await asyncio.sleep(0)  # A ends its block, sees B waiting, hands the lock over
        task_b.cancel()  # ... and B goes before it ever runs with it
        assert await asyncio.wait_for(task_a, timeout=5)
        with pytest.raises(asyncio.CancelledError):
            await task_b
    finally:
        await store.close()


# --- writes queued for one trip -----------------------------------------------------------------

REQUEST = contextvars.ContextVar("request", default="none")


def _insert(message: MessageRecord, *, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    """A write for `Store.write`: the message row, then (fail) an error after it."""

    def run(conn: sqlite3.Connection) -> str:
        Step(conn).record_mail(message, now=NOW)
        if fail:
            raise Rollback
        return f"{message.message_id} in {REQUEST.get()}"

    return run


async def _write(store: Store, name: str, *, fail: bool = False) -> tuple[str, bool]:
    """One queued write, asked for in a context of its own; (its answer, committed then)."""
    REQUEST.set(name)
    message = _message(None)
    answer = await store.write(_insert(message, fail=fail))
    return answer, _committed(store.path, message.message_id)


async def test_writes_queued_together_share_one_commit_and_each_is_durable_on_return(
    tmp_path: Path,
) -> None:
    """Twenty writes asked for at once: one trip, one COMMIT, each answer given only when its
    row can be read from another connection, each run in the context it was asked in."""
    store = await Store.open(tmp_path / "var")
    try:
        before = store.commits
        results = await asyncio.gather(*(_write(store, f"r{i}") for i in range(20)))
        assert store.commits - before == 1
        for i, (answer, visible) in enumerate(results):
            assert visible
            assert answer.endswith(f" in r{i}")
        assert (await _write(store, "alone"))[1]
        assert store.commits - before == 2
    finally:
        await store.close()


async def _in_transaction(store: Store, name: str, *, fail: bool = False) -> tuple[str, bool]:
    return await _record(store, fail=fail)


@pytest.mark.parametrize("way", [_in_transaction, _write], ids=["transaction", "write"])
async def test_a_failing_transaction_among_others_undoes_only_its_own_work(
    tmp_path: Path, way: Callable[..., Awaitable[tuple[str, bool]]]
) -> None:
    """Three at once, the middle one fails: its exception, its row gone; the others'
    rows committed on return, all with one COMMIT."""
    store = await Store.open(tmp_path / "var")
    try:
        before = store.commits
        results = await asyncio.gather(
            way(store, "a"), way(store, "b", fail=True), way(store, "c"),
            return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[1], Rollback)
        assert [r[1] for r in (results[0], results[2]) if isinstance(r, tuple)] == [True, True]
        assert store.commits - before == 1
        assert _messages(store.path) == 2
    finally:
        await store.close()


async def test_a_flush_runs_once_per_trip_and_a_failed_one_stops_its_writes(
    tmp_path: Path,
) -> None:
    """Writes that name a flush (the blobs' sync): it runs once for all of them, before the
    transaction. When it raises OSError, those writes raise it and write nothing; a write
    of the same trip that names no flush still commits."""
    store = await Store.open(tmp_path / "var")
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
        assert _messages(store.path) == 3
    finally:
        await store.close()


async def test_a_write_queued_behind_a_transaction_commits_it_too(tmp_path: Path) -> None:
    """A transaction that ends while a write waits leaves its COMMIT to the write's trip:
    both return committed, after one COMMIT."""
    store = await Store.open(tmp_path / "var")
    try:
        before = store.commits
        release = asyncio.Event()
        task = await _held_open(store, release)
        queued = asyncio.create_task(_write(store, "w"))
        for _ in range(5):  # the write's trip waits for the transaction's lock
            await asyncio.sleep(0)
        release.set()
        assert await asyncio.wait_for(task, timeout=5)
        assert (await asyncio.wait_for(queued, timeout=5))[1]
        assert store.commits - before == 1
    finally:
        await store.close()


async def _until(flag: threading.Event) -> None:
    """Wait (bounded) on the event loop for `flag`, set on another thread."""
    for _ in range(500):
        if flag.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the database thread never got there")


class _Held:
    """A write that, once started, keeps the database thread until `release` is set."""

    def __init__(self, message: MessageRecord, log: list[str]) -> None:
        self.message = message
        self.log = log
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> str:
        Step(conn).record_mail(self.message, now=NOW)
        self.started.set()
        if not self.release.wait(10):
            raise AssertionError("never released")
        self.log.append("first write")
        return "first"


def _appears_while_blocked(path: Path, message_id: str) -> bool:
    """Called on the event loop, which it blocks: does the row get committed meanwhile
    (looked for up to 5 s)?"""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _committed(path, message_id):
            return True
        time.sleep(0.01)
    return False


async def test_writes_queued_during_a_trip_are_committed_next_without_the_event_loop(
    tmp_path: Path,
) -> None:
    """A write queued while a trip runs goes to disk right after that trip's COMMIT, on the
    database thread: it does not wait for the event loop (blocked here) to come round."""
    store = await Store.open(tmp_path / "var")
    try:
        before = store.commits
        held, second = _Held(_message(None), []), _message(None)
        one = asyncio.create_task(store.write(held))
        await _until(held.started)
        two = asyncio.create_task(store.write(_insert(second)))
        await asyncio.sleep(0)  # queued, while the first trip still runs
        held.release.set()
        assert _appears_while_blocked(store.path, second.message_id)
        assert await one == "first"
        assert (await two).startswith(second.message_id)
        assert store.commits - before == 2
    finally:
        await store.close()


async def test_a_transaction_waiting_for_the_lock_goes_before_later_writes(
    tmp_path: Path,
) -> None:
    """Writes run trip after trip only while nobody else waits: a transaction that asked for
    the lock during a trip gets it before a write queued after it."""
    store = await Store.open(tmp_path / "var")
    try:
        order: list[str] = []
        held = _Held(_message(None), order)
        one = asyncio.create_task(store.write(held))
        await _until(held.started)

        async def transaction() -> None:
            async with store.transaction() as tx:
                await tx.call(lambda conn: order.append("transaction"))

        waiting = asyncio.create_task(transaction())
        for _ in range(5):  # the transaction queues for the lock
            await asyncio.sleep(0)
        two = asyncio.create_task(store.write(lambda conn: order.append("second write")))
        await asyncio.sleep(0)  # queued behind the transaction
        held.release.set()
        await asyncio.wait_for(asyncio.gather(one, waiting, two), timeout=10)
        assert order == ["first write", "transaction", "second write"]
    finally:
        await store.close()


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database), read from the WAL
    index in `-shm` (mxFrame of the header, nBackfill of the checkpoint info after the
    header's two copies), as SQLite keeps them in native byte order."""
    shm = Path(f"{path}-shm").read_bytes()
    (max_frame,) = struct.unpack_from("=I", shm, 16)
    (backfilled,) = struct.unpack_from("=I", shm, 96)
    return max_frame, backfilled


async def test_the_daemons_store_copies_the_wal_into_the_database_in_the_background(
    tmp_path: Path,
) -> None:
    """With start_checkpoints, a few commits (far below any size that makes a COMMIT
    checkpoint) are copied into the database soon after, by the store itself."""
    store = await Store.open(tmp_path / "var")
    try:
        await store.start_checkpoints()
        for i in range(20):
            await _write(store, f"w{i}")
        frames, copied = _wal_frames(store.path)
        assert frames > copied  # nothing has checkpointed them yet
        for _ in range(40):  # bounded: 4 s, against CHECKPOINT_SECONDS of 0.25
            await asyncio.sleep(0.1)
            frames, copied = _wal_frames(store.path)
            if copied == frames:
                break
        assert copied == frames > 0
    finally:
        await store.close()


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


async def test_a_version_1_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        number = await _open_ticket(store, 100001)
    finally:
        await store.close()
    path = tmp_path / "ticketmail.sqlite3"
    _make_version_1(path)
    assert _index_columns(path, "outbox_recipient") == ["recipient", "created_at"]

    store = await Store.open(tmp_path)
    await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4  # the latest version
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
        assert await _open_ticket(store, 100001) == number + 1
    finally:
        await store.close()
