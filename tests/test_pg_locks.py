"""Several nodes' writers on one PostgreSQL database wait for each other only where they must
(SPEC 10; `postgres.begin_write`): jobs that may run alongside other nodes' jobs (a mail taken
in, an outbox claim, a session touched, a search batch, a login failure) hold the write lock
shared and never wait for each other, unless they name the same key (one Message-ID, one
ticket, one address); a job that must run alone waits for all of them, and they for it.
Ticket numbers come from a sequence that two nodes take from at once; the desk's tally is
kept per writer, so that two nodes opening tickets never wait for one row.

Each "node" here is a connection of its own running its trip as the writer thread does
(`begin_write`, the job, COMMIT), the second one on a thread, watched through
`pg_stat_activity`. These are PostgreSQL's rules, so they run on it whatever backend the
rest of the suite runs on. Two nodes started at once on an empty database make its schema
once (the migration's advisory lock)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import eventually, eventually_sync
from pgcluster import PgCluster
from structlog.testing import capture_logs
from test_nodes_shared import waits_for_a_lock

from ticketmail.storage import logins
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn
from ticketmail.storage.mails import next_ticket_number, raise_ticket_numbers
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.postgres import MIGRATE_LOCK, PgConn, begin_write, connect, migrate
from ticketmail.storage.records import NewTicket
from ticketmail.storage.tickets import insert_ticket

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ANNA = "anna@schule.example"
BEN = "ben@schule.example"

Job = Callable[[Conn], object]


def _nothing(conn: Conn) -> object:
    return conn.execute("SELECT 1").fetchone()[0]


@contextmanager
def trip_open(conn: PgConn, *, alone: bool, keys: tuple[str, ...] = ()) -> Iterator[PgConn]:
    """Node A's trip, begun and not yet committed (committed on leaving)."""
    begin_write(conn, alone=alone, keys=keys)
    try:
        yield conn
    finally:
        conn.execute("COMMIT" if conn.in_transaction else "SELECT 1")


class OtherNode:
    """Node B's trip on a thread: begun, `job` run, committed; `done` once it has."""

    def __init__(self, conn: PgConn, *, alone: bool, keys: tuple[str, ...] = (), job: Job) -> None:
        self.conn = conn
        self.result: list[object] = []
        self.error: list[BaseException] = []

        def run() -> None:
            try:
                begin_write(conn, alone=alone, keys=keys)
                value = job(conn)
                conn.execute("COMMIT")
                self.result.append(value)
            except BaseException as exc:
                self.error.append(exc)

        self._thread = threading.Thread(target=run, name="node-b")
        self._thread.start()

    def done(self) -> bool:
        return bool(self.result or self.error)

    def join(self) -> object:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "node B's trip never ended"
        if self.error:
            raise self.error[0]
        return self.result[0]


@pytest.fixture
def three(pg_url: str) -> Iterator[tuple[PgConn, PgConn, PgConn]]:
    """Node A's and node B's writer connections, and one that watches (outside any trip)."""
    conns = (connect(pg_url), connect(pg_url), connect(pg_url))
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def runs_meanwhile(b: OtherNode, watcher: PgConn) -> None:
    """Node B's trip ends while node A's is still open (it never waited for A's)."""
    eventually_sync(b.done, what="node B's trip, which must not wait for node A's")
    assert not waits_for_a_lock(watcher, b.conn)
    b.join()


def waits_until_a_commits(b: OtherNode, watcher: PgConn) -> None:
    """Node B's trip is seen waiting for a lock, and has not ended, while A's is open."""
    eventually_sync(lambda: waits_for_a_lock(watcher, b.conn), what="node B waiting on a lock")
    assert not b.done()


def test_jobs_alongside_each_other_never_wait(three: tuple[PgConn, PgConn, PgConn]) -> None:
    """Two nodes' trips of jobs that may run alongside, with different keys, run at once."""
    a, b, watcher = three
    with trip_open(a, alone=False, keys=("ticket:1", "mail:<1@x>")):
        other = OtherNode(b, alone=False, keys=("ticket:2", "mail:<2@x>"), job=_nothing)
        runs_meanwhile(other, watcher)


def test_a_job_alone_waits_for_the_others_and_they_for_it(
    three: tuple[PgConn, PgConn, PgConn],
) -> None:
    """A trip with a job that must run alone waits for every open trip of another node, and
    a trip alongside waits for an open one that runs alone."""
    a, b, watcher = three
    with trip_open(a, alone=False, keys=("ticket:1",)):
        other = OtherNode(b, alone=True, job=_nothing)
        waits_until_a_commits(other, watcher)
    other.join()
    with trip_open(a, alone=True):
        other = OtherNode(b, alone=False, keys=("ticket:2",), job=_nothing)
        waits_until_a_commits(other, watcher)
    other.join()


def test_two_jobs_with_one_key_wait_for_each_other(three: tuple[PgConn, PgConn, PgConn]) -> None:
    """One Message-ID delivered to two nodes at once: the second trip waits for the first."""
    a, b, watcher = three
    with trip_open(a, alone=False, keys=("mail:<same@x>", "ticket:3")):
        other = OtherNode(b, alone=False, keys=("ticket:9", "mail:<same@x>"), job=_nothing)
        waits_until_a_commits(other, watcher)
    other.join()


async def test_a_job_whose_key_is_held_is_put_off_not_its_trip(
    tmp_path: Path, three: tuple[PgConn, PgConn, PgConn]
) -> None:
    """Node B's writer gets two jobs in one trip while node A's trip holds the key of the
    first: the second is committed at once (the trip did not wait), the first once A's
    trip has ended (put off to B's next trips, then waited for)."""
    a, _, _ = three
    db = await Database.open(DatabaseTarget("postgres", tmp_path / "unused", a.raw.info.dsn))
    try:
        with trip_open(a, alone=False, keys=("ticket:7",)):
            held = asyncio.ensure_future(db.write(_nothing, alongside=("ticket:7",)))
            free = asyncio.ensure_future(db.write(_nothing, alongside=("ticket:8",)))
            await eventually(free.done, what="the job whose key is free, committed meanwhile")
            assert not held.done()
        assert await asyncio.wait_for(held, timeout=30) == 1
        assert free.result() == 1
    finally:
        await db.close()


def _add_customer(conn: PgConn) -> None:
    conn.execute(
        "INSERT INTO customers(number, name, created_at) VALUES ('10042', 'Gymnasium', ?)",
        (NOW.isoformat(),),
    )


def test_ticket_numbers_two_nodes_at_once_are_unique_and_never_reused(
    three: tuple[PgConn, PgConn, PgConn],
) -> None:
    """Two nodes open a ticket each at the same moment: neither waits (the number from the
    sequence, the tally per writer), the numbers differ; a number whose job was rolled back
    is a gap, never handed out again."""
    a, b, watcher = three
    _add_customer(a)

    def open_ticket(conn: Conn) -> int:
        number = next_ticket_number(conn, first_number=1)
        insert_ticket(conn, NewTicket(number, "10042", ANNA, "Drucker", False, None), now=NOW)
        return number

    with trip_open(a, alone=False, keys=("mail:<a@x>",)):
        first = open_ticket(a)
        other = OtherNode(b, alone=False, keys=("mail:<b@x>",), job=open_ticket)
        runs_meanwhile(other, watcher)
        second = other.join()
    assert first != second
    begin_write(a, alone=False)
    rolled_back = open_ticket(a)
    a.execute("ROLLBACK")
    with trip_open(a, alone=False):
        after = open_ticket(a)
    assert after > max(first, rolled_back, int(str(second)))
    numbers = [r[0] for r in a.execute("SELECT number FROM tickets ORDER BY number")]
    assert rolled_back not in numbers
    assert len(numbers) == len(set(numbers)) == 3
    tally = a.execute("SELECT SUM(n) FROM ticket_tally WHERE status = 'new'").fetchone()
    assert tally[0] == 3  # the desk's count: every writer's slot summed


def test_first_number_is_raised_at_start_and_never_lowered(pg_url: str) -> None:
    """`raise_ticket_numbers` (the daemon's and the CLI's start) moves the sequence up to
    `tickets.first_number`, and past a ticket written with its own number; a lower setting
    later changes nothing."""
    conn = connect(pg_url)
    try:
        with trip_open(conn, alone=True):
            raise_ticket_numbers(conn, first_number=5000)
        with trip_open(conn, alone=False):
            assert next_ticket_number(conn, first_number=5000) == 5000
        with trip_open(conn, alone=True):
            raise_ticket_numbers(conn, first_number=100)
        with trip_open(conn, alone=False):
            assert next_ticket_number(conn, first_number=100) == 5001
        _add_customer(conn)  # a ticket written with its own number (an import): passed by
        insert_ticket(conn, NewTicket(7000, "10042", ANNA, "Drucker", False, None), now=NOW)
        with trip_open(conn, alone=True):
            raise_ticket_numbers(conn, first_number=100)
        with trip_open(conn, alone=False):
            assert next_ticket_number(conn, first_number=100) == 7001
    finally:
        conn.close()


def test_a_version_14_database_gets_the_sequence_past_its_numbers(pg_url: str) -> None:
    """A database of schema version 14 (numbers counted from the rows, one tally row per
    owner and status) is migrated: the sequence continues after the highest number handed
    out, and the tally keeps its counts."""
    conn = connect(pg_url)
    try:
        conn.raw.execute(
            "DROP SEQUENCE ticket_numbers; "
            "ALTER TABLE ticket_tally DROP CONSTRAINT ticket_tally_pkey; "
            "ALTER TABLE ticket_tally DROP COLUMN slot; "
            "ALTER TABLE ticket_tally ADD PRIMARY KEY (owner, status); "
            "INSERT INTO ticket_tally(owner, status, n) VALUES ('', 'new', 3); "
            "INSERT INTO meta(key, value) VALUES ('last_ticket_number', '41'); "
            "UPDATE meta SET value = '14' WHERE key = 'schema_version'"
        )
        migrate(conn)
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version[0] == "15"
        _add_customer(conn)
        with trip_open(conn, alone=False):
            number = next_ticket_number(conn, first_number=1)
            insert_ticket(conn, NewTicket(number, "10042", ANNA, "Drucker", False, None), now=NOW)
        assert number == 42
        tally = conn.execute("SELECT SUM(n) FROM ticket_tally WHERE status = 'new'").fetchone()
        assert tally[0] == 4
    finally:
        conn.close()


def _failure(email: str) -> Job:
    def record(conn: Conn) -> bool:
        return logins.record_login_failure(conn, email, source="127.0.0.5", device=None, now=NOW)

    return record


def test_login_failures_wait_only_for_the_same_address(
    three: tuple[PgConn, PgConn, PgConn],
) -> None:
    """A failure for one address (its key held, as `guard.failed` names it) waits for another
    node's failure for that address, so that the second counts the first and locks at the
    limit; a failure for another address never waits."""
    a, b, watcher = three
    for _ in range(logins.MAX_FAILURES - 2):
        with trip_open(a, alone=False, keys=(f"login:{ANNA}",)):
            _failure(ANNA)(a)
    with trip_open(a, alone=False, keys=(f"login:{ANNA}",)):
        assert _failure(ANNA)(a) is False  # the fourth, not yet committed
        stranger = OtherNode(b, alone=False, keys=(f"login:{BEN}",), job=_failure(BEN))
        runs_meanwhile(stranger, watcher)
        same = OtherNode(b, alone=False, keys=(f"login:{ANNA}",), job=_failure(ANNA))
        waits_until_a_commits(same, watcher)
    assert same.join() is True  # the fifth, counted after the fourth: locked
    locks = a.execute("SELECT COUNT(*) FROM login_locks WHERE email = ?", (ANNA,)).fetchone()
    assert locks[0] == 1


def test_two_nodes_starting_on_an_empty_database_make_its_schema_once(
    pg_cluster: PgCluster,
) -> None:
    """Two nodes started at the same moment on an empty database: one makes the schema, the
    other waits for it (the migration's advisory lock), then finds it made; both go on."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    url = pg_cluster.url(name)
    watcher, a, b = connect(url), connect(url), connect(url)
    try:
        watcher.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK,))  # both must queue
        errors: list[BaseException] = []

        def start(conn: PgConn) -> None:
            try:
                migrate(conn)
            except BaseException as exc:
                errors.append(exc)

        with capture_logs() as events:
            nodes = [threading.Thread(target=start, args=(c,)) for c in (a, b)]
            for node in nodes:
                node.start()
            eventually_sync(
                lambda: waits_for_a_lock(watcher, a) and waits_for_a_lock(watcher, b),
                what="both nodes waiting to migrate",
            )
            watcher.execute("SELECT pg_advisory_unlock(?)", (MIGRATE_LOCK,))
            for node in nodes:
                node.join(timeout=60)
                assert not node.is_alive(), "a node's migration never ended"
        assert errors == []
        made = [e for e in events if e["event"] == "schema_migrated"]
        assert [(e["found"], e["version"]) for e in made] == [(0, SCHEMA_VERSION)]
        (version,) = watcher.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
        assert int(version) == SCHEMA_VERSION
    finally:
        for conn in (watcher, a, b):
            conn.close()
        pg_cluster.drop_database(name)
