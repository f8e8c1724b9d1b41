"""The daemon: wires store, intake, SMTP server and outbox worker; signals and systemd."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from .config import Config
from .files import BlobStore
from .intake import Intake
from .notify import Templates
from .relay import FileTransport, OutboxWorker, SmtpTransport, Transport
from .sdnotify import notify, watchdog_interval
from .smtp import Handler, TicketSMTP, make_protocol_factory
from .store import Store

__all__ = ["Daemon", "open_parts", "serve", "utcnow"]

log = structlog.get_logger()


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_transport(config: Config) -> Transport:
    if config.relay.transport == "smtp":
        return SmtpTransport(config.relay, hostname=config.smtp.hostname)
    return FileTransport(config.data_dir / "sent")


async def open_parts(
    config: Config, *, clock: Callable[[], datetime] = utcnow
) -> tuple[Store, Intake]:
    """The store and an Intake on it, as the daemon and the CLI both use them."""
    templates = Templates(config.templates_dir)
    templates.check()
    store = await Store.open(config.data_dir)
    intake = Intake(config, store, BlobStore(config.data_dir / "blobs"), templates, clock=clock)
    return store, intake


class Daemon:
    """One running ticketmail: `start`, then `stop`. Tests run it in their own event loop."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.store: Store | None = None
        self.worker: OutboxWorker | None = None
        self.handler: Handler | None = None
        self._server: asyncio.Server | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._sessions: set[TicketSMTP] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        cfg = self.config
        store, intake = await open_parts(cfg, clock=self.clock)
        self.store = store
        self.worker = OutboxWorker(store, make_transport(cfg), cfg.relay, clock=self.clock)
        intake.on_queued = self.worker.wake
        self.handler = Handler(intake, cfg)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                make_protocol_factory(self.handler, cfg, self._sessions),
                host=cfg.smtp.host,
                port=cfg.smtp.port,
                reuse_address=True,
            )
        except OSError:
            await store.close()
            raise
        self._worker_task = asyncio.create_task(self.worker.run(), name="outbox-worker")
        log.info(
            "daemon_started",
            host=cfg.smtp.host,
            port=self.port,
            data_dir=str(cfg.data_dir),
            relay=cfg.relay.transport,
        )

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop accepting, let mails in DATA finish (up to `grace`), stop the worker, close."""
        if self._server is not None:
            self._server.close()
        if self.handler is not None and self.handler.inflight:
            await asyncio.wait(set(self.handler.inflight), timeout=grace)
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        if self.worker is not None:
            self.worker.stop()
        if self._worker_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._worker_task, timeout=grace)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        if self.store is not None:
            await self.store.close()
            self.store = None
        log.info("daemon_stopped")


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; tell systemd when ready, alive and stopping."""
    daemon = Daemon(config)
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify(f"READY=1\nSTATUS=accepting mail on {config.smtp.host}:{daemon.port}")
    interval = watchdog_interval()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval or 3600)
        if interval:
            notify("WATCHDOG=1")
    notify("STOPPING=1")
    log.info("daemon_stopping")
    await daemon.stop()
    return 0
