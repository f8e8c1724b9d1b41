"""The scheduler of waiting tickets (SPEC 9.1): every `desk.wait_check_seconds` one write job
opens the tickets whose waiting time is over (history by 'system') and queues a reminder to
each one's owner, else the agents. One task per daemon; several nodes may run it on one
database at once: `end_due_wait` lets exactly one of them end each wait and remind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from ticketmail.config import Config
from ticketmail.mail.msgid import MessageIds
from ticketmail.outbound.agents import wait_over
from ticketmail.outbound.compose import Templates
from ticketmail.storage.dialect import ALONGSIDE, Conn
from ticketmail.storage.store import Store
from ticketmail.storage.waiting import any_wait_due, due_waits, end_due_wait

__all__ = ["WaitScheduler"]

log = structlog.get_logger()


class WaitScheduler:
    """`run` until `stop`; `run_once` is one pass (tests call it with a moved clock)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        templates: Callable[[], Templates],  # the current ones (SIGHUP may load new ones)
        ids: Callable[[], MessageIds],
        clock: Callable[[], datetime],
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.templates = templates
        self.ids = ids
        self.clock = clock
        self.on_queued = on_queued
        self._stopping = asyncio.Event()

    async def run_once(self) -> int:
        """One pass: the tickets whose wait this pass ended."""
        cfg, now = self.config, self.clock()
        templates, ids = self.templates(), self.ids()

        def job(conn: Conn) -> tuple[int, int]:
            ended = reminders = 0
            for wait in due_waits(conn, now=now):
                if not end_due_wait(conn, wait, now=now):
                    continue  # another node (or pass) ended it, or it changed meanwhile
                told = wait_over(conn, wait.ticket, until=wait.until, config=cfg,
                                 templates=templates, ids=ids, now=now)  # fmt: skip
                log.info("wait_over", ticket=wait.ticket, until=wait.until.isoformat(),
                         reminders=told)  # fmt: skip
                ended += 1
                reminders += told
            return ended, reminders

        if not await any_wait_due(self.store.db, now=now):
            return 0  # nothing due: no write (every node passes, every few seconds)
        ended, reminders = await self.store.write(job, alongside=ALONGSIDE)
        if reminders and self.on_queued is not None:
            self.on_queued()
        return ended

    async def run(self) -> None:
        """Pass after pass until `stop`; a pass that fails is logged and tried again later."""
        interval = self.config.desk.wait_check_seconds
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the database away a moment: the next pass tries again
                log.error("wait_check_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    def stop(self) -> None:
        """The pass under way finishes; no other starts."""
        self._stopping.set()
