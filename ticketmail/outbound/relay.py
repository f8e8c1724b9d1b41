"""The outbox worker: delivers queued mail through the relay with backoff, apart from intake.

Claimed, never shared (SPEC 10): the worker claims a few due entries at a time for a lease
(`storage.outbox.claim_due`) and sends only what it holds; a node that dies mid-send leaves
its claims to any node once their leases run out, and such a repeat is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from ticketmail.config import RelayConfig
from ticketmail.errors import ConfigError, TicketmailError
from ticketmail.metrics import Metrics
from ticketmail.storage.availability import unavailable
from ticketmail.storage.blobs import write_file_durably
from ticketmail.storage.records import OutboxDue
from ticketmail.storage.store import Store

__all__ = [
    "FileTransport",
    "OutboxWorker",
    "RelayError",
    "SmtpTransport",
    "Transport",
    "probe_relay",
    "relay_tls_context",
]

log = structlog.get_logger()

# A whole send (connect, greet, secure, log in, the mail) is cut after this many times
# relay.timeout_seconds (each step is bounded by it alone): a send outlasts no lease.
SEND_TIMEOUTS = 2
# A claim's lease per send, beyond the send's bound: the mark's commit, clocks of nodes
# that differ a little.
LEASE_MARGIN_SECONDS = 30.0


class RelayError(TicketmailError):
    """A delivery attempt failed; `permanent` when the relay answered 5xx."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, raw: bytes, *, sender: str, recipient: str, name: str) -> None: ...

    async def idle(self) -> None:
        """Nothing more is due for now: let go of what a burst of mails kept open."""


class FileTransport:
    """Development transport: every mail becomes `<dir>/<name>.eml`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, raw: bytes, *, sender: str, recipient: str, name: str) -> None:
        del sender, recipient
        try:
            await asyncio.to_thread(write_file_durably, self.directory / f"{name}.eml", raw)
        except OSError as exc:
            message = f"cannot write {self.directory}: {exc.strerror}"
            raise RelayError(message, permanent=False) from None

    async def idle(self) -> None:
        return None


class SmtpTransport:
    """Delivery through an SMTP relay: plain, STARTTLS or implicit TLS, optional AUTH.

    A burst of mails goes over one connection, as an MTA delivers a queue run; the worker
    closes it (`idle`) once nothing more is due. Any failure drops the connection; a kept
    one that the relay closed meanwhile is replaced at once, once.
    """

    def __init__(self, config: RelayConfig, *, hostname: str) -> None:
        self.config = config
        self.hostname = hostname
        self.tls_context = relay_tls_context(config)
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, raw: bytes, *, sender: str, recipient: str, name: str) -> None:
        del name
        try:
            try:
                await self._sendmail(raw, sender=sender, recipient=recipient)
            except aiosmtplib.SMTPServerDisconnected:
                if self._client is None:  # it was a fresh connection: a real failure
                    raise
                self._drop()
                await self._sendmail(raw, sender=sender, recipient=recipient)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._drop()
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise RelayError(text, permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            raise RelayError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            raise RelayError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        except BaseException:
            self._drop()
            raise

    async def _sendmail(self, raw: bytes, *, sender: str, recipient: str) -> None:
        """One transaction over the kept connection, or a new one (kept on success)."""
        client = self._client
        if client is None:
            client = await self._connect()
            try:
                await client.sendmail(sender, [recipient], raw)
            except BaseException:
                client.close()
                raise
            self._client = client
            return
        await client.sendmail(sender, [recipient], raw)

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            local_hostname=self.hostname,
            timeout=cfg.timeout_seconds,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=self.tls_context,
        )
        try:
            await client.connect()
            if cfg.username:
                await client.login(cfg.username, cfg.password)
        except BaseException:
            client.close()
            raise
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def idle(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()
            client.close()


async def probe_relay(config: RelayConfig, *, hostname: str) -> str:
    """Connect, greet, secure and log in to the relay as a delivery would, then quit.

    Returns the relay's greeting; raises RelayError with the reason when any step fails.
    """
    client = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        local_hostname=hostname,
        timeout=config.timeout_seconds,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        tls_context=relay_tls_context(config),
    )
    try:
        greeting = await client.connect()
        if config.username:
            await client.login(config.username, config.password)
        await client.quit()
    except aiosmtplib.SMTPResponseException as exc:
        raise RelayError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise RelayError(f"{type(exc).__name__}: {exc}", permanent=False) from None
    finally:
        client.close()
    return f"{greeting.code} {greeting.message}"


def relay_tls_context(config: RelayConfig) -> ssl.SSLContext | None:
    """The client context for the relay: the system's CAs, or only those of tls_ca_file."""
    if config.security == "none":
        return None
    if not config.tls_ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=config.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"relay.tls_ca_file: cannot load {config.tls_ca_file}: {exc}") from None


async def _settled(marks: list[asyncio.Task[None]]) -> None:
    """Wait for every mark, then raise the first that failed (its entry stays queued)."""
    results = await asyncio.gather(*marks, return_exceptions=True)
    marks.clear()
    for result in results:
        if isinstance(result, BaseException):
            raise result


class OutboxWorker:
    """Claims what is due, sends it, sleeps until the next entry is due or it is woken
    (in-process by the intake, the desk and the scheduler; by any node's NOTIFY on
    PostgreSQL)."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        config: RelayConfig,
        *,
        clock: Callable[[], datetime],
        node: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.config = config
        self.clock = clock
        self.node = node
        self.metrics = metrics
        self.send_seconds = SEND_TIMEOUTS * config.timeout_seconds
        self.lease = timedelta(seconds=self.send_seconds + LEASE_MARGIN_SECONDS)
        self._wake = asyncio.Event()
        self._stopping = False
        # Conclusions the database missed (it was away): a mark, a deferral, a release.
        # Made good at the next pass, before anything is claimed, so that the entries they
        # hold need not wait out their leases (a mail the relay took is not sent again).
        self._owed: list[Callable[[], Awaitable[None]]] = []

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop between two attempts; an attempt under way is finished first."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        listening = asyncio.create_task(self.store.listen_outbox(self.wake), name="outbox-listen")
        try:
            await self._loop()
        finally:
            listening.cancel()
            await asyncio.wait({listening})
            if not listening.cancelled() and listening.exception() is not None:
                log.error("outbox_listen_failed", error=repr(listening.exception()))

    async def _loop(self) -> None:
        started = False
        away = False  # the database was away at the last pass (said once, not every poll)
        while not self._stopping:
            try:
                if not started:
                    await self._take_back_own_claims()
                    started = True
                await self.run_once()
                delay = await self._delay()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if not unavailable(exc):
                    log.error("outbox_worker_error", error=error)
                elif not away:
                    log.warning("outbox_worker_waiting", reason="database unavailable", error=error)
                away = away or unavailable(exc)
                delay = self.config.poll_seconds
            else:
                if away:
                    log.info("outbox_worker_resumed")
                away = False
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def _take_back_own_claims(self) -> None:
        """Claims of this node's name from before it started were cut off (it was killed):
        their leases end now, so they go out at once, each counted as a repeat.
        (node.name must differ between nodes: another node's claims are not taken.)"""
        ended = await self.store.expire_outbox_claims(self.node, now=self.clock())
        if ended:
            log.warning("outbox_claims_ended", count=ended, reason="claimed before this start")

    async def _delay(self) -> float:
        due = await self.store.next_outbox_due()
        if due is None:
            return self.config.poll_seconds
        seconds = (due - self.clock()).total_seconds()
        return min(max(seconds, 0.05), self.config.poll_seconds)

    async def run_once(self) -> int:
        """Claim what is due, a few at a time, and attempt each once; return how many were
        attempted. What this pass claimed and did not attempt (it was told to stop, or a
        claim's lease grew too short for a send) is given back at once.

        A sent entry is marked in the database while the next one goes out (the marks of a
        batch are all committed before the next claim, so nothing is sent twice). A mark,
        deferral or release the database missed is owed, and made good first thing at the
        next pass.
        """
        await self._make_good()
        attempted = 0
        marks: list[asyncio.Task[None]] = []
        claimed: list[OutboxDue] = []
        async with contextlib.AsyncExitStack() as finish:  # each step, whatever failed before
            finish.push_async_callback(self.transport.idle)
            finish.push_async_callback(self._give_back, claimed)
            finish.push_async_callback(_settled, marks)
            while not self._stopping:
                await _settled(marks)
                await self._give_back(claimed)
                claimed[:] = await self.store.claim_outbox(
                    node=self.node, now=self.clock(), lease=self.lease
                )
                if not claimed:
                    break
                for entry in claimed:
                    self._note_repeat(entry)
                while claimed and not self._stopping:
                    entry = claimed[0]
                    if (entry.lease_until - self.clock()).total_seconds() < self.send_seconds:
                        break  # too little of its lease left: given back, claimed afresh
                    del claimed[0]
                    if await self._attempt(entry):
                        marks.append(
                            asyncio.create_task(
                                self._conclude(functools.partial(self._sent, entry)),
                                name="outbox-mark",
                            )
                        )
                    attempted += 1
        return attempted

    async def _conclude(self, step: Callable[[], Awaitable[None]]) -> None:
        """Take `step` (a conclusion in the database); owed when the database is away."""
        try:
            await step()
        except Exception as exc:
            if unavailable(exc):
                self._owed.append(step)
            raise

    async def _make_good(self) -> None:
        """The conclusions owed from passes the database missed, in their order."""
        count = len(self._owed)
        while self._owed:
            await self._owed[0]()
            del self._owed[0]
        if count:
            log.info("outbox_owed_concluded", count=count)

    async def _give_back(self, claimed: list[OutboxDue]) -> None:
        if claimed:
            entries = claimed[:]
            claimed.clear()
            await self._conclude(lambda: self._release(entries))

    async def _release(self, entries: list[OutboxDue]) -> None:
        released = await self.store.release_outbox(entries)
        log.info("outbox_released", count=released, outbox=[e.id for e in entries])

    def _note_repeat(self, entry: OutboxDue) -> None:
        """A lease ran out on this entry: its node may have sent it already (counted)."""
        if entry.taken_from is None:
            return
        if self.metrics is not None:
            self.metrics.outbox_repeat()
        log.warning(
            "outbox_lease_expired",
            outbox=entry.id,
            claimed_by=entry.taken_from,
            recipient=entry.recipient,
            attempts=entry.attempts,
        )

    async def _attempt(self, entry: OutboxDue) -> bool:
        """Send one entry: True when the relay took it (the caller marks it sent)."""
        name = f"{entry.queued_at:%Y%m%dT%H%M%S}-{entry.id:06d}"
        try:
            async with asyncio.timeout(self.send_seconds):
                await self.transport.send(
                    entry.raw, sender=entry.sender, recipient=entry.recipient, name=name
                )
        except RelayError as exc:
            error, permanent = str(exc), exc.permanent
        except TimeoutError:
            error, permanent = f"the send took longer than {self.send_seconds:g} s", False
        else:
            return True
        await self._conclude(lambda: self._failed(entry, error, permanent=permanent))
        return False

    async def _sent(self, entry: OutboxDue) -> None:
        await self.store.outbox_sent(entry.id, now=self.clock())
        log.info(
            "outbox_sent", outbox=entry.id, recipient=entry.recipient, attempts=entry.attempts + 1
        )

    async def _failed(self, entry: OutboxDue, error: str, *, permanent: bool) -> None:
        now = self.clock()
        age = now - entry.queued_at
        if permanent or age >= timedelta(hours=self.config.max_age_hours):
            if not await self.store.outbox_failed(entry, error=error):
                self._overtaken(entry)
                return
            log.error(
                "outbox_failed",
                outbox=entry.id,
                recipient=entry.recipient,
                error=error,
                permanent=permanent,
                attempts=entry.attempts + 1,
            )
            return
        delay = min(
            self.config.retry_initial_seconds * (2**entry.attempts),
            self.config.retry_max_seconds,
        )
        at = now + timedelta(seconds=delay)
        if not await self.store.outbox_retry_later(entry, error=error, at=at):
            self._overtaken(entry)
            return
        log.warning(
            "outbox_deferred",
            outbox=entry.id,
            recipient=entry.recipient,
            error=error,
            attempts=entry.attempts + 1,
            retry_in=delay,
        )

    def _overtaken(self, entry: OutboxDue) -> None:
        log.warning("outbox_claim_lost", outbox=entry.id, reason="its lease ran out meanwhile")
