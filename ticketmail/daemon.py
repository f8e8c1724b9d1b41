"""The daemon: wires store, intake, SMTP server, outbox worker and the scheduler of waiting
tickets; signals and systemd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from ticketmail._sdnotify import Notifier, watchdog_interval
from ticketmail.config import Config
from ticketmail.errors import ConfigError
from ticketmail.intake.admission import AdmissionPool
from ticketmail.intake.process import Intake
from ticketmail.listen import Listener, listen
from ticketmail.outbound.compose import Templates
from ticketmail.outbound.relay import FileTransport, OutboxWorker, SmtpTransport, Transport
from ticketmail.outbound.waits import WaitScheduler
from ticketmail.smtp.server import Handler, ProtocolFactory, TicketSMTP
from ticketmail.storage.blobs import open_blobs
from ticketmail.storage.mails import raise_ticket_numbers
from ticketmail.storage.store import Store

__all__ = ["Daemon", "open_parts", "serve", "utcnow"]

log = structlog.get_logger()

# SIGTERM waits `smtp.shutdown_grace_seconds` (default 30 s, below systemd's TimeoutStopSec=45s)
# for mails under way (MAIL given, DATA not yet answered).
# A mail whose DATA is complete is committed within milliseconds; this bounds the wait for
# commits under way once the grace is over or a second SIGTERM came.
COMMIT_WAIT_SECONDS = 5.0
# How long closing the database may take at a forced stop.
CLOSE_WAIT_SECONDS = 5.0
# After SIGTERM the process ends within the shutdown grace plus this, whatever hangs: the
# last resort is os._exit (systemd's TimeoutStopSec=45s is above 30 s + 10 s).
HARD_EXIT_MARGIN_SECONDS = 10.0
EXIT_OVERDUE = 70  # EX_SOFTWARE
SHUTDOWN_POLL_SECONDS = 0.05
# Said to idle sessions when the daemon stops (RFC 5321 4.2.2: 421 closes the channel).
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_transport(config: Config) -> Transport:
    if config.relay.transport == "smtp":
        return SmtpTransport(config.relay, hostname=config.smtp.hostname)
    return FileTransport(config.paths.sent)


async def open_parts(
    config: Config, *, clock: Callable[[], datetime] = utcnow
) -> tuple[Store, Intake]:
    """The store and an Intake on it, as the daemon and the CLI both use them."""
    templates = Templates(config.templates_dir)
    templates.check()
    store = await Store.open(config.data_dir, config.database)
    if store.target.postgres:
        first = config.tickets.first_number
        try:
            await store.write(lambda conn: raise_ticket_numbers(conn, first_number=first))
        except BaseException:
            await store.close()
            raise
    blobs = open_blobs(config.paths.blobs, config.database)
    intake = Intake(config, store, blobs, templates, clock=clock)
    return store, intake


def _mail_under_way(session: TicketSMTP) -> bool:
    """MAIL was accepted and its DATA not yet answered (aiosmtpd resets the envelope then)."""
    envelope: Any = getattr(session, "envelope", None)
    return envelope is not None and envelope.mail_from is not None


def _close_session(session: TicketSMTP, *, reply: str | None) -> None:
    transport: Any = session.transport
    if transport is None or transport.is_closing():
        return
    if reply is not None:
        transport.write(reply.encode("ascii") + b"\r\n")
    transport.close()  # flushes what was written (the last reply, a 250 among them) first


class Daemon:
    """One running ticketmail: `start`, then `stop` (or `abort`). Tests run it in their loop."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.store: Store | None = None
        self.intake: Intake | None = None
        self.worker: OutboxWorker | None = None
        self.handler: Handler | None = None
        self._server: Listener | None = None
        self._factory: ProtocolFactory | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self.waits: WaitScheduler | None = None
        self._waits_task: asyncio.Task[None] | None = None
        self._sessions: set[TicketSMTP] = set()
        self._web: Any = None  # the portal's server (web.WebServer) and its reader
        self._web_reader: Any = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def web_port(self) -> int:
        """The portal's port (tests run it on port 0)."""
        assert self._web is not None
        port: int = self._web.port
        return port

    @property
    def healthy(self) -> bool:
        """Accepting mail and the outbox worker alive: what the systemd watchdog vouches for."""
        return (
            self._server is not None
            and self._server.is_serving()
            and self._worker_task is not None
            and not self._worker_task.done()
        )

    async def start(self) -> None:
        cfg = self.config
        store, intake = await open_parts(cfg, clock=self.clock)
        self.store = store
        self.intake = intake
        await store.start_checkpoints()
        store.start_search_index()
        swept = await asyncio.to_thread(intake.blobs.sweep_temporary)
        if swept:
            log.info("temporary_files_removed", count=swept)
        if cfg.smtp.workers:
            intake.pool = AdmissionPool(cfg, cfg.smtp.workers)
            try:
                await intake.pool.start()
            except BaseException:
                await self._close_store()
                raise
        self.worker = OutboxWorker(
            store, make_transport(cfg), cfg.relay, clock=self.clock, node=cfg.node_name,
            metrics=intake.metrics,
        )  # fmt: skip
        intake.on_queued = self.worker.wake
        self.handler = Handler(intake, cfg)
        self._factory = ProtocolFactory(self.handler, cfg, self._sessions)
        if cfg.web.enabled:
            from .web import start_web

            try:
                self._web, self._web_reader = await start_web(
                    cfg, intake, clock=self.clock, on_queued=self.worker.wake
                )
            except BaseException:
                await self._close_store()
                raise
        try:
            # Accepting pauses when descriptors run out, instead of asyncio's busy loop.
            self._server = await listen(cfg.smtp.host, cfg.smtp.port, self._factory, name="smtp")
        except OSError:
            await self._stop_web()
            await self._close_store()
            raise
        self._worker_task = asyncio.create_task(self.worker.run(), name="outbox-worker")
        ids = await intake.message_ids()
        self.waits = WaitScheduler(
            cfg, store, templates=lambda: intake.templates, ids=lambda: ids, clock=self.clock,
            on_queued=self.worker.wake,
        )  # fmt: skip
        self._waits_task = asyncio.create_task(self.waits.run(), name="wait-scheduler")
        log.info(
            "daemon_started",
            host=cfg.smtp.host,
            port=self.port,
            data_dir=str(cfg.data_dir),
            relay=cfg.relay.transport,
            node=cfg.node_name,
        )

    def reload(self) -> None:
        """SIGHUP: load the templates and the TLS certificate again; keep the old on error."""
        assert self.handler is not None
        assert self._factory is not None
        try:
            templates = Templates(self.config.templates_dir)
            templates.check()
        except ConfigError as exc:
            log.error("templates_reload_failed", error=str(exc))
        else:
            self.handler.intake.templates = templates
            log.info("templates_reloaded", dir=str(self.config.templates_dir))
        if self.config.smtp.tls_cert_file:
            try:
                self._factory.reload_tls()
            except ConfigError as exc:
                log.error("tls_reload_failed", error=str(exc))
            else:
                log.info("tls_reloaded", cert=self.config.smtp.tls_cert_file)

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop accepting, let mails under way finish (up to `grace`), stop the worker, close.

        `grace` is `smtp.shutdown_grace_seconds` unless given. Idle sessions get a 421 at once.
        The worker finishes the attempt it is in and stops.
        Cancelling `stop` (a second SIGTERM) is safe; `abort` then ends the rest at once.
        """
        if grace is None:
            grace = self.config.smtp.shutdown_grace_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._refuse_new_sessions()
        if self.worker is not None:
            self.worker.stop()
        if self.waits is not None:
            self.waits.stop()
        waiting_told = False
        while True:
            for session in list(self._sessions):
                if not _mail_under_way(session):
                    _close_session(session, reply=REPLY_SHUTTING_DOWN)
            if not self._sessions and not self._inflight():
                break
            mails = sum(map(_mail_under_way, self._sessions))
            if not waiting_told and (mails or self._inflight()):
                waiting_told = True
                log.info(
                    "shutdown_waiting",
                    mails=mails,
                    committing=len(self._inflight()),
                    grace_seconds=grace,
                )
            if loop.time() >= deadline:
                log.warning(
                    "shutdown_grace_over", sessions=len(self._sessions), grace_seconds=grace
                )
                break
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        self._cut_sessions()
        await self._wait_inflight(COMMIT_WAIT_SECONDS)
        await self._stop_web()
        if self._worker_task is not None and not self._worker_task.done():
            remaining = max(deadline - loop.time(), 0.0)
            await asyncio.wait({self._worker_task}, timeout=remaining)
        await self._cancel_worker()
        await self._stop_waits()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        await self._close_store()
        log.info("daemon_stopped")

    async def abort(self) -> None:
        """End at once: cut every session, cancel the worker and unfinished commits, close.

        Safe at any instant for the same reason kill -9 is: a mail is committed whole or not
        at all, and only a committed mail was answered 250.
        """
        self._refuse_new_sessions()
        if self.worker is not None:
            self.worker.stop()
        self._cut_sessions()
        for task in self._inflight():
            task.cancel()
        await self._wait_inflight(CLOSE_WAIT_SECONDS)
        await self._stop_web()
        await self._cancel_worker()
        await self._stop_waits()
        await self._close_store()
        log.warning("daemon_stopped", forced=True)

    def _refuse_new_sessions(self) -> None:
        """Close the listener; a connection it accepted just before (its session not made
        yet) is answered 421 and closed, so no mail starts after the wait for those under way.
        """
        if self._factory is not None:
            self._factory.refusing = REPLY_SHUTTING_DOWN
        if self._server is not None:
            self._server.close()

    @property
    def protocol_factory(self) -> ProtocolFactory | None:
        """The SMTP sessions' factory (for tests that hand it an accepted socket)."""
        return self._factory

    def _inflight(self) -> set[asyncio.Task[Any]]:
        return set(self.handler.inflight) if self.handler is not None else set()

    def _cut_sessions(self) -> None:
        for session in list(self._sessions):
            _close_session(session, reply=None if _mail_under_way(session) else REPLY_SHUTTING_DOWN)

    async def _wait_inflight(self, seconds: float) -> None:
        """Commits under way finish (or roll back); a cut session cannot stop them."""
        pending = self._inflight()
        if pending:
            _, late = await asyncio.wait(pending, timeout=seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=seconds)

    async def _cancel_worker(self) -> None:
        """A delivery cut off here is retried after the next start (sent at least once)."""
        task = self._worker_task
        if task is None:
            return
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_WAIT_SECONDS)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("outbox_worker_error", error=repr(task.exception()))
        self._worker_task = None

    async def _stop_waits(self) -> None:
        """The scheduler's pass under way finishes (bounded: then cancelled; its write job
        commits whole or not at all)."""
        task, self._waits_task = self._waits_task, None
        if self.waits is not None:
            self.waits.stop()
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=CLOSE_WAIT_SECONDS)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_WAIT_SECONDS)

    async def _stop_web(self) -> None:
        """The portal stops taking requests; those under way finish (bounded)."""
        server, self._web = self._web, None
        if server is not None:
            await server.stop()
        reader, self._web_reader = self._web_reader, None
        if reader is not None:
            await reader.close()

    async def _close_store(self) -> None:
        """Close the store, the intake's worker processes and its reading connections."""
        intake, self.intake = self.intake, None
        if intake is not None:
            pool, intake.pool = intake.pool, None
            if pool is not None:
                await pool.close()
            intake.admitter.close()
        store, self.store = self.store, None
        if store is not None:
            try:
                await asyncio.wait_for(store.close(), timeout=CLOSE_WAIT_SECONDS)
            except Exception as exc:
                log.error("store_close_failed", error=f"{type(exc).__name__}: {exc}")


async def _watchdog(daemon: Daemon, notifier: Notifier, interval: float) -> None:
    """Ping systemd every `interval` while the daemon is healthy; silence means restart me."""
    while True:
        if daemon.healthy:
            notifier.notify("WATCHDOG=1")
        else:
            log.error("watchdog_withheld", reason="server or outbox worker not running")
        await asyncio.sleep(interval)


def raise_descriptor_limit(config: Config) -> None:
    """The soft limit of open descriptors up to the hard one (systemd: LimitNOFILE); a word
    when the web's connections could take half of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if hard == resource.RLIM_INFINITY:  # the kernel's nr_open caps it
        wanted = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    try:
        if wanted != soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError) as exc:
        log.warning("descriptor_limit_not_raised", soft=soft, hard=hard, error=str(exc))
        wanted = soft
    else:
        log.info("descriptor_limit", soft_before=soft, soft=wanted, hard=hard)
    limited = wanted != resource.RLIM_INFINITY
    if config.web.enabled and limited and config.web.max_connections * 2 > wanted:
        log.warning(
            "web_max_connections_high", max_connections=config.web.max_connections,
            descriptors=wanted,
        )  # fmt: skip


def _exit_after(seconds: float) -> threading.Timer:
    """The last resort of a stop: end the process after `seconds`, whatever still runs."""

    def overdue() -> None:
        log.error("daemon_stop_overdue", seconds=seconds)
        os._exit(EXIT_OVERDUE)

    timer = threading.Timer(seconds, overdue)
    timer.name = "ticketmail-stop-deadline"
    timer.daemon = True  # never what keeps the process alive
    timer.start()
    return timer


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; a second one ends it at once. Tell systemd what happens."""
    raise_descriptor_limit(config)
    notifier = Notifier()  # its socket opened now, while descriptors are free
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    first, second = asyncio.Event(), asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if first.is_set():
            log.warning("daemon_stop_forced", signal=signum.name)
            second.set()
            return
        log.info("daemon_stopping", signal=signum.name)
        _exit_after(config.smtp.shutdown_grace_seconds + HARD_EXIT_MARGIN_SECONDS)
        first.set()

    # Before start: a SIGTERM while starting stops the daemon cleanly once it has started.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, _on_hangup, daemon, notifier)
    pinger: asyncio.Task[None] | None = None
    try:
        await daemon.start()
        if not first.is_set():
            notifier.notify(f"READY=1\nSTATUS=accepting mail on {config.smtp.host}:{daemon.port}")
        interval = watchdog_interval()
        if interval:
            pinger = asyncio.create_task(_watchdog(daemon, notifier, interval), name="watchdog")
        await first.wait()
        notifier.notify("STOPPING=1\nSTATUS=stopping: finishing mails under way")
        stopping = asyncio.create_task(daemon.stop(), name="stop")
        forced = asyncio.create_task(second.wait(), name="second-signal")
        await asyncio.wait({stopping, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if stopping.done():
            await stopping  # re-raises what went wrong while stopping
        else:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            await daemon.abort()
    finally:
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()
    return 0


def _on_hangup(daemon: Daemon, notifier: Notifier) -> None:
    if daemon.handler is None:  # still starting: what it loads now is current anyway
        return
    notifier.notify("RELOADING=1")
    daemon.reload()
    notifier.notify("READY=1")
