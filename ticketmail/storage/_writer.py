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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from ticketmail.errors import TicketmailError
from ticketmail.storage.dialect import Conn

__all__ = ["MAX_BATCH", "Writer"]

log = structlog.get_logger()
T = TypeVar("T")

# Group commit: at most this many jobs share one COMMIT (one fsync of the WAL).
MAX_BATCH = 32
# An idle thread waits at most this many turns of the event loop for more jobs.
HAND_OVER_TURNS = 3
_SAVEPOINT = "job"

Outcome = tuple[bool, Any]  # (True, the job's result) or (False, its exception)


@dataclass(frozen=True, slots=True, eq=False)
class _Job:
    """A queued write: its work, the context it was asked in (log fields bound there), where
    its result goes, and what must be durable before it runs (its rows refer to it)."""

    fn: Callable[[Conn], Any]
    context: contextvars.Context
    future: asyncio.Future[Any]
    flush: Callable[[], None] | None


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


def _run_trip(conn: Conn, jobs: Sequence[_Job]) -> list[Outcome]:
    """The jobs' flushes, then each job in a SAVEPOINT of its own, then one COMMIT.

    Raises only when the transaction itself fails (BEGIN or COMMIT): then nothing of the
    trip is kept.
    """
    flushed = _flushed(jobs)
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[Outcome] = []
    for job in jobs:
        failed = flushed.get(job.flush) if job.flush is not None else None
        if failed is not None:  # what its rows would refer to is not on disk: it does not run
            outcomes.append((False, failed))
            continue
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            value = job.context.run(job.fn, conn)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            else:  # SQLite rolled the whole transaction back (disk full, I/O error)
                gone = TicketmailError("the database rolled the transaction back")
                outcomes = [(False, gone) if ok else (ok, v) for ok, v in outcomes]
                conn.execute("BEGIN IMMEDIATE")
            outcomes.append((False, exc))
            continue
        conn.execute(f"RELEASE {_SAVEPOINT}")
        outcomes.append((True, value))
    conn.execute("COMMIT")
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

    def __init__(self, conn: Conn, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn  # used on the thread only, from `start` on
        self._loop = loop
        self._cond = threading.Condition()
        # Guarded by _cond: the queue, whether the event loop handed it over, closing.
        self._jobs: deque[_Job] = deque()
        self._handed = False
        self._closing = False
        # Event loop only: a hand-over is scheduled; jobs queued and COMMITs told so far.
        self._kick_due = False
        self._stir = 0
        self._ended: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="ticketmail-writer", daemon=True)
        self.commits = 0  # COMMITs done (read by the checkpoints, tests and the benchmark)

    def start(self) -> None:
        self._thread.start()

    async def write(self, fn: Callable[[Conn], T], *, flush: Callable[[], None] | None) -> T:
        """Queue `fn` as a job; its result once committed, or its exception (work undone)."""
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a database is written from the event loop it was opened in")
        job = _Job(fn, contextvars.copy_context(), self._loop.create_future(), flush)
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
                self._cond.wait()
            self._handed = False
            return [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]

    def _run(self) -> None:
        at_once = False
        try:
            while (jobs := self._take(at_once=at_once)) is not None:
                self._trip(jobs)
                at_once = True
        finally:
            with self._cond:
                self._closing = True
                left, self._jobs = list(self._jobs), deque()
            with contextlib.suppress(Exception):
                self._conn.close()
            stopped = TicketmailError("the database writer stopped")
            self._tell(left, [(False, stopped)] * len(left))
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_set_done, self._ended)

    def _trip(self, jobs: list[_Job]) -> None:
        try:
            outcomes = _run_trip(self._conn, jobs)
        except BaseException as exc:  # the transaction failed: none of the trip is kept
            with contextlib.suppress(Exception):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            log.error("commit_failed", jobs=len(jobs), error=f"{type(exc).__name__}: {exc}")
            outcomes = [(False, exc)] * len(jobs)
        else:
            self.commits += 1
        self._tell(jobs, outcomes)

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
            self._conn.close()  # never started
            return
        await asyncio.shield(self._ended)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
