"""The one thread that writes: jobs from a queue, group commit, each caller told after its COMMIT.

A job is a function of the writer's plain `sqlite3` connection. The thread takes every job
queued (up to MAX_BATCH) as one trip: first the flushes the jobs name (each once), then
BEGIN IMMEDIATE, each job in a SAVEPOINT of its own (a failing job undoes only itself), then
one COMMIT, one fsync of the WAL, for all of them. Each caller resumes once that COMMIT is
done. Jobs queued while a trip runs go in the next trip right after it, on the thread,
without waiting for the event loop. Jobs queued while the thread is idle are handed over
once the event loop has gone a whole turn without queueing another job or telling a
COMMIT (at most HAND_OVER_TURNS turns): the callers a COMMIT wakes queue their next jobs
first, so that one trip carries them all (callers out of step come together again instead
of splitting into small trips, each with its own flush and fsync).

A caller cancelled while its job waits in the queue takes the job out: it never runs. Once
the thread has taken it, it runs whole and is committed (or fails whole) like the others of
its trip; only nobody is told.

On PostgreSQL the connection can break (the server restarted, the network went away). The
trip then fails whole and its callers get DatabaseUnavailable (a COMMIT cut off is logged as
of unknown outcome: the caller answers 451 and the sender's retry finds the mail stored, if
it was, SPEC 4.5); the node's Availability goes down, jobs queued meanwhile fail at once,
and the thread opens a new connection, trying again after RECONNECT_FIRST_SECONDS, doubling
up to RECONNECT_MAX_SECONDS, until it has one (each try bounded by libpq's
connect_timeout). Should a reader find the database away first, the thread checks its own
connection and reconnects likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog

from ticketmail.errors import TicketmailError
from ticketmail.storage import postgres, wakeups
from ticketmail.storage.availability import Availability, DatabaseUnavailable
from ticketmail.storage.dialect import Conn
from ticketmail.storage.postgres import begin_write, try_keys

__all__ = ["MAX_BATCH", "Writer"]

log = structlog.get_logger()
T = TypeVar("T")

# Group commit: at most this many jobs share one COMMIT (one fsync of the WAL).
MAX_BATCH = 32
# A job whose key another node's trip holds is put off to the next trip at most this often;
# then its trip waits for the key (`_run_trip`).
MAX_PUT_OFF = 3
# An idle thread waits at most this many turns of the event loop for more jobs.
HAND_OVER_TURNS = 3
_SAVEPOINT = "job"
# After a broken connection: the pause before the next try to open one, doubling up to the
# longest (the time from the database's return to the first 250 is at most about that).
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
# The note on an exception raised by the COMMIT itself (its outcome unknown when the
# connection broke).
_AT_COMMIT = "raised by COMMIT"
# ... and by the BEGIN (nothing of the trip ran: it may run again on a new connection).
_AT_BEGIN = "raised by BEGIN"

Outcome = tuple[bool, Any]  # (True, the job's result) or (False, its exception)


@dataclass(frozen=True, slots=True, eq=False)
class _Job:
    """A queued write: its work, the context it was asked in (log fields bound there), where
    its result goes, and what must be durable before it runs (its rows refer to it)."""

    fn: Callable[[Conn], Any]
    context: contextvars.Context
    future: asyncio.Future[Any]
    flush: Callable[[], None] | None
    alongside: tuple[str, ...] | None  # None: it runs alone (see `Writer.write`)
    put_off: int = 0  # trips it was put off from (its keys held by another node's)


def _flushed(jobs: Sequence[_Job]) -> dict[Callable[[], None], Exception | None]:
    """Run each flush the jobs name once; what each raised (None: it succeeded)."""
    done: dict[Callable[[], None], Exception | None] = {}
    for job in jobs:
        if job.flush is None or job.flush in done:
            continue
        try:
            job.flush()
            done[job.flush] = None
        except Exception as exc:
            done[job.flush] = exc
    return done


def _run_trip(conn: Conn, jobs: Sequence[_Job]) -> list[Outcome | None]:
    """The jobs' flushes, then each job in a SAVEPOINT of its own, then one COMMIT; each
    job's outcome, or None for a job put off (below).

    A job alongside other nodes' (PostgreSQL) tries its keys: while another node's trip
    holds one, it is put off to the next trip rather than waited for, so that a trip never
    waits for another node's; put off MAX_PUT_OFF times, its trip waits for its keys at
    BEGIN (one order for all, so two trips never wait for each other in a circle).
    Raises only when the transaction itself fails (BEGIN or COMMIT): then nothing of the
    trip is kept.
    """
    flushed = _flushed(jobs)
    alone = any(job.alongside is None for job in jobs)
    waited = {k for job in jobs if job.put_off >= MAX_PUT_OFF for k in job.alongside or ()}
    try:
        begin_write(conn, alone=alone, keys=waited)
    except Exception as exc:
        exc.add_note(_AT_BEGIN)
        raise
    outcomes: list[Outcome | None] = []
    for job in jobs:
        failed = flushed.get(job.flush) if job.flush is not None else None
        if failed is not None:  # what its rows would refer to is not on disk: it does not run
            outcomes.append((False, failed))
            continue
        if not alone and job.alongside and not try_keys(conn, job.alongside):
            outcomes.append(None)  # another node's trip holds one of its keys: put off
            continue
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        asked = wakeups.notices(conn)
        try:
            value = job.context.run(job.fn, conn)
        except Exception as exc:
            wakeups.take_back_notices(conn, asked)  # undone with its rows
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            else:  # SQLite rolled the whole transaction back (disk full, I/O error)
                gone = TicketmailError("the database rolled the transaction back")
                outcomes = [(False, gone) if o is not None and o[0] else o for o in outcomes]
                conn.execute("BEGIN IMMEDIATE")
            outcomes.append((False, exc))
            continue
        conn.execute(f"RELEASE {_SAVEPOINT}")
        outcomes.append((True, value))
    try:
        conn.execute("COMMIT")
    except Exception as exc:
        exc.add_note(_AT_COMMIT)
        raise
    return outcomes


def _settle(jobs: Sequence[_Job], outcomes: Sequence[Outcome]) -> None:
    """On the event loop: tell each job's caller (unless it was cancelled meanwhile)."""
    for job, (ok, value) in zip(jobs, outcomes, strict=True):
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


class Writer:
    """The writer thread of one database and its queue; `write` from the event loop."""

    def __init__(
        self,
        conn: Conn,
        loop: asyncio.AbstractEventLoop,
        *,
        reopen: Callable[[], Conn] | None = None,
        availability: Availability | None = None,
    ) -> None:
        # Used on the thread only, from `start` on; None while the database is away.
        self._conn: Conn | None = conn
        # Opens a new connection after one broke (PostgreSQL); None: never reconnect (SQLite).
        self._reopen = reopen
        self.availability = availability or Availability()
        self._loop = loop
        self._cond = threading.Condition()
        # Guarded by _cond: the queue, whether the event loop handed it over, closing.
        self._jobs: deque[_Job] = deque()
        self._handed = False
        self._closing = False
        self._check = False  # the database was found away elsewhere: check the connection
        if reopen is not None:
            self.availability.watch(self._wake)
        # Event loop only: a hand-over is scheduled; jobs queued and COMMITs told so far.
        self._kick_due = False
        self._stir = 0
        self._ended: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="ticketmail-writer", daemon=True)
        self.commits = 0  # COMMITs done (read by the checkpoints, tests and the benchmark)

    def start(self) -> None:
        self._thread.start()

    async def write(
        self,
        fn: Callable[[Conn], T],
        *,
        flush: Callable[[], None] | None,
        alongside: Sequence[str] | None = None,
    ) -> T:
        """Queue `fn` as a job; its result once committed, or its exception (work undone).

        `alongside` (PostgreSQL, several nodes): None, the job runs alone, as every job does
        on SQLite (its trip holds the write lock exclusively, no other node's trip runs
        meanwhile); a sequence of keys, the job is safe beside other nodes' jobs of that kind
        and its trip holds the write lock shared, plus these keys (see `postgres.begin_write`;
        a job whose key another node's trip holds is put off to the next trip, `_run_trip`).
        """
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a database is written from the event loop it was opened in")
        self.availability.check()  # the database away: fail at once, never wait for it
        keys = tuple(alongside) if alongside is not None else None
        job = _Job(fn, contextvars.copy_context(), self._loop.create_future(), flush, keys)
        with self._cond:
            if self._closing:
                raise TicketmailError("the database is closed")
            self._jobs.append(job)
        self._stir += 1
        if not self._kick_due:
            self._kick_due = True
            self._loop.call_soon(self._hand_over, self._stir, 1)
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            with self._cond, contextlib.suppress(ValueError):
                self._jobs.remove(job)  # still queued: it never runs
            raise
        return result

    def _hand_over(self, seen: int, turns: int) -> None:
        """On the event loop: the queue to the thread, once a turn of the loop went by
        without a job queued or a COMMIT told (or after HAND_OVER_TURNS turns)."""
        if self._stir != seen and turns < HAND_OVER_TURNS:
            self._loop.call_soon(self._hand_over, self._stir, turns + 1)
            return
        self._kick_due = False
        with self._cond:
            self._handed = True
            self._cond.notify()

    def _take(self, *, at_once: bool) -> list[_Job] | None:
        """On the thread: the next trip's jobs, waited for; None once closed and done.

        `at_once` (right after a trip): whatever is queued, without the event loop's word.
        """
        with self._cond:
            while not (self._jobs and (at_once or self._handed or self._closing)):
                if self._closing and not self._jobs:
                    return None
                if self._check:
                    return []
                self._cond.wait()
            self._handed = False
            return [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]

    def _wake(self) -> None:
        """From any thread, once the database was found away: the thread checks its own
        connection (and reconnects) even while no job comes."""
        with self._cond:
            self._check = True
            self._cond.notify()

    def _run(self) -> None:
        at_once = False
        try:
            while True:
                if self._check:
                    self._check = False
                    self._probe()
                if self._conn is None and not self._reconnect():
                    break  # closing while the database is away
                jobs = self._take(at_once=at_once)
                if jobs is None:
                    break
                if jobs:
                    self._trip(jobs)
                at_once = True
        finally:
            with self._cond:
                self._closing = True
                left, self._jobs = list(self._jobs), deque()
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            stopped = TicketmailError("the database writer stopped")
            self._tell(left, [(False, stopped)] * len(left))
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_set_done, self._ended)

    def _trip(self, jobs: list[_Job]) -> None:
        conn = self._conn
        assert conn is not None
        outcomes: Sequence[Outcome | None]
        try:
            try:
                outcomes = _run_trip(conn, jobs)
            except Exception as exc:
                # A connection that broke while idle (the server restarted since the last
                # trip) is found at BEGIN: nothing ran, so the trip runs on a new one.
                if not (self._fresh(conn) and _AT_BEGIN in getattr(exc, "__notes__", ())):
                    raise
                assert self._conn is not None
                conn = self._conn
                outcomes = _run_trip(conn, jobs)
        except BaseException as exc:  # the transaction failed: none of the trip is kept
            error = f"{type(exc).__name__}: {exc}"
            if self._reopen is not None and postgres.broken(conn):
                outcomes = [(False, self._broke(exc, jobs=len(jobs)))] * len(jobs)
            else:
                with contextlib.suppress(Exception):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                log.error("commit_failed", jobs=len(jobs), error=error)
                outcomes = [(False, exc)] * len(jobs)
            wakeups.take_back_notices(conn, 0)
        else:
            self.commits += 1
            try:
                wakeups.send_notices(conn)
            except Exception as exc:  # committed all the same; the workers' polls make up for it
                log.warning("outbox_notice_failed", error=f"{type(exc).__name__}: {exc}")
        put_off = [
            replace(job, put_off=job.put_off + 1)
            for job, o in zip(jobs, outcomes, strict=True)
            if o is None
        ]
        if put_off:  # first in the next trip, which follows at once
            with self._cond:
                self._jobs.extendleft(reversed(put_off))
        done = [(job, o) for job, o in zip(jobs, outcomes, strict=True) if o is not None]
        self._tell([job for job, _ in done], [o for _, o in done])

    def _fresh(self, conn: Conn) -> bool:
        """`conn` broke: replaced by a new connection at once, if one can be opened."""
        if self._reopen is None or not postgres.broken(conn):
            return False
        try:
            fresh = self._reopen()
        except Exception:
            return False
        with contextlib.suppress(Exception):
            conn.close()
        self._conn = fresh
        log.info("database_reconnected", tries=1)
        return True

    def _broke(self, exc: BaseException, *, jobs: int) -> DatabaseUnavailable:
        """The connection broke under a trip: dropped, the database marked away; what the
        trip's callers get (a COMMIT cut off: its outcome unknown, SPEC 4.5's duplicate
        check recognises the sender's retry should it have committed)."""
        conn, self._conn = self._conn, None
        with contextlib.suppress(Exception):
            if conn is not None:
                conn.close()
        error = f"{type(exc).__name__}: {exc}".strip()
        if _AT_COMMIT in getattr(exc, "__notes__", ()):
            log.error("commit_outcome_unknown", jobs=jobs, error=error)
            gone = DatabaseUnavailable("the database went away during COMMIT: outcome unknown")
        else:
            if jobs:
                log.error("commit_failed", jobs=jobs, error=error)
            gone = DatabaseUnavailable("the database went away")
        self.availability.lost(error)
        return gone

    def _probe(self) -> None:
        """On the thread: is the connection still good? Broken: dropped (to be reopened)."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("SELECT 1").fetchall()
        except Exception as exc:
            self._broke(exc, jobs=0)
        else:
            self.availability.back()

    def _reconnect(self) -> bool:
        """On the thread: open a new connection, trying again with a growing pause; jobs
        queued meanwhile fail at once. False: the writer closes before it succeeded."""
        assert self._reopen is not None
        pause = RECONNECT_FIRST_SECONDS
        tries = 0
        while True:
            self._fail_queued()
            tries += 1
            try:
                self._conn = self._reopen()
            except Exception as exc:
                if tries == 1:
                    log.warning("database_reconnect_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                log.info("database_reconnected", tries=tries)
                self.availability.back()
                return True
            with self._cond:
                if not self._closing:
                    self._cond.wait(pause)
                if self._closing:
                    return False
            pause = min(pause * 2, RECONNECT_MAX_SECONDS)

    def _fail_queued(self) -> None:
        """The jobs queued while the database is away: told so at once."""
        with self._cond:
            left, self._jobs = list(self._jobs), deque()
            self._handed = False
        gone = DatabaseUnavailable("the database is unavailable")
        self._tell(left, [(False, gone)] * len(left))

    def _tell(self, jobs: list[_Job], outcomes: list[Outcome]) -> None:
        if jobs:
            with contextlib.suppress(RuntimeError):  # the event loop is closed
                self._loop.call_soon_threadsafe(self._settle, jobs, outcomes)

    def _settle(self, jobs: list[_Job], outcomes: list[Outcome]) -> None:
        """On the event loop: tell the callers (who may queue more: a hand-over waits)."""
        _settle(jobs, outcomes)
        self._stir += 1

    async def close(self) -> None:
        """Run what is queued, then stop the thread (it closes the connection)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if not self._thread.is_alive() and not self._thread.ident:
            if self._conn is not None:
                self._conn.close()  # never started
            return
        await asyncio.shield(self._ended)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
