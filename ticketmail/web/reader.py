"""Reads of the web's pages: blocking storage functions on read-only connections, in
threads; searches on threads of their own (SPEC 8.4). A connection found broken is replaced
(`storage.readers.ThreadReaders`); while the database is away reads raise
DatabaseUnavailable at once (the page says the service is briefly unavailable)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from ticketmail.storage.availability import Availability
from ticketmail.storage.dialect import DATABASE_ERRORS
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.readers import ThreadReaders

__all__ = ["Reader"]

log = structlog.get_logger()

T = TypeVar("T")

# Threads reading for the pages: as many as there are cores (2 to 4). SQLite runs without
# the GIL, but building a page's values from its rows needs it; more threads than cores only
# take the GIL from the event loop in turns, and every page waits (6 threads, the default
# executor's count on 2 cores, gave a 50-article ticket page 56 ms at p99 under 20 clients;
# 2 threads gave 33 ms, bench/README.md).
READER_THREADS = max(2, min(4, os.cpu_count() or 2))
# How long closing waits for the reads under way.
CLOSE_SECONDS = 5.0
# Threads for searches, apart from the readers: a search stops at its deadline, but four
# heavy ones at once would otherwise hold every reader and every page would wait behind
# them (SPEC 8.4). One core fewer than the readers, so that page views and mail intake keep
# a core; searches queue for these (their deadline counts from the request, so a search
# that waited long gets little time and says so).
SEARCH_THREADS = max(1, READER_THREADS - 1)


class Reader:
    """`await reader(fn, *args)` runs `fn(conn, *args)` on a reader thread's own read-only
    connection to the database (WAL: it sees what is committed, never waits for a writer)."""

    def __init__(self, target: DatabaseTarget, availability: Availability | None = None) -> None:
        self.target = target
        self._readers = ThreadReaders(target, availability)
        self._threads = ThreadPoolExecutor(READER_THREADS, "ticketmail-reader")
        self._searches = ThreadPoolExecutor(SEARCH_THREADS, "ticketmail-search")

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await self._on(self._threads, fn, args, kwargs)

    async def search(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """As a call, on a search thread (a connection of its own): never on a reader."""
        return await self._on(self._searches, fn, args, kwargs)

    async def _on(
        self, pool: ThreadPoolExecutor, fn: Callable[..., T], args: Any, kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._run, fn, args, kwargs)  # in the caller's log context
        return await loop.run_in_executor(pool, contextvars.copy_context().run, call)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        return self._readers.run(fn, *args, **kwargs)

    async def close(self, seconds: float = CLOSE_SECONDS) -> None:
        """No new reads; those under way finish (up to `seconds`, then they are left to the
        process's end), then the connections are closed. Never blocks the event loop."""
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[None] = loop.create_future()

        def join() -> None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._searches.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_set_done, joined)

        threading.Thread(target=join, name="ticketmail-reader-join", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(joined), seconds)
        except TimeoutError:
            log.error("web_reader_close_late", seconds=seconds)
            return
        for conn in self._readers.take_all():
            try:
                conn.close()
            except DATABASE_ERRORS as exc:
                log.error("web_reader_close_failed", error=f"{type(exc).__name__}: {exc}")


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
