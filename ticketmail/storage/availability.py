"""Whether the database answers: one state per node that the writer keeps and the SMTP front
and the web read (SPEC 10: no `250` while the database is away, `/healthz` 503, pages say
the service is briefly unavailable, and every node carries on by itself once it is back).

The state goes down when a connection is found broken (the writer's, or a reader that cannot
open one); the writer thread then reconnects with a growing pause between tries, and the
state goes up again once it has a connection. With SQLite it never goes down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import structlog

from ticketmail.errors import TicketmailError

__all__ = ["Availability", "DatabaseUnavailable", "unavailable"]

log = structlog.get_logger()


class DatabaseUnavailable(TicketmailError):
    """The database cannot be reached, or a COMMIT's outcome is unknown: nothing is promised,
    try again later (SMTP 451 4.3.0, HTTP 503)."""


def unavailable(exc: BaseException) -> bool:
    """`exc` says the database is away (or did not answer in time), not that the statement
    was wrong: the request may succeed when tried again later."""
    # OperationalError: connection failures, a server shutting down, statement timeouts,
    # psycopg_pool's PoolTimeout; InterfaceError: a connection already closed.
    return isinstance(exc, DatabaseUnavailable | psycopg.OperationalError | psycopg.InterfaceError)


class Availability:
    """Up or down, thread-safe: `lost` and `back` from any thread, `up` read anywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up = True
        self._since = time.monotonic()
        self._watchers: list[Callable[[], None]] = []

    @property
    def up(self) -> bool:
        return self._up

    def check(self) -> None:
        """Raise DatabaseUnavailable while the database is known to be away."""
        if not self._up:
            raise DatabaseUnavailable("the database is unavailable")

    def watch(self, fn: Callable[[], None]) -> None:
        """`fn()` (from whichever thread found it) each time the state goes down."""
        with self._lock:
            self._watchers.append(fn)

    def lost(self, reason: str) -> None:
        """The database is away (a connection broke or could not be opened)."""
        with self._lock:
            if not self._up:
                return
            self._up = False
            self._since = time.monotonic()
            watchers = list(self._watchers)
        log.error("database_unavailable", reason=reason)
        for fn in watchers:
            fn()

    def back(self) -> None:
        """A connection works again."""
        with self._lock:
            if self._up:
                return
            self._up = True
            down = time.monotonic() - self._since
        log.info("database_available", down_seconds=round(down, 3))
