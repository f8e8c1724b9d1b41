"""The SMTP front: aiosmtpd server protocol and handler, replies after the outcome is durable."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Session, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from ticketmail.config import Config
from ticketmail.errors import ConfigError
from ticketmail.intake.process import Envelope, Intake
from ticketmail.memory import LARGE_BYTES
from ticketmail.smtp._dataread import DataState
from ticketmail.smtp._private import FastPaths
from ticketmail.smtp.limits import Clocks, Sources, source_of
from ticketmail.smtp.replies import (
    REPLY_BAD_RECIPIENT,
    REPLY_DATA_TOO_LONG,
    REPLY_DATA_TOO_SLOW,
    REPLY_IDLE_BEFORE_MAIL,
    REPLY_LINE_TOO_LONG,
    REPLY_NO_MEMORY,
    REPLY_RECIPIENT_OK,
    REPLY_SESSION_TOO_LONG,
    REPLY_TEMPORARY_FAILURE,
    REPLY_TOO_BIG,
    REPLY_TOO_MANY_FROM_SOURCE,
    REPLY_TOO_MANY_SESSIONS,
)
from ticketmail.smtp.spool import MemoryBudget, MemoryTrim, Spool

__all__ = ["Handler", "ProtocolFactory", "TicketLMTP", "TicketSMTP", "tls_context"]

log = structlog.get_logger()
_session_ids = itertools.count(1)

# Replies of the SMTP front itself (RFC 3463 codes), beside those in replies.py.
REPLY_TOO_MANY_COMMANDS = "421 4.7.0 {hostname} Too many commands in this session, closing"
REPLY_IDLE_TIMEOUT = "421 4.4.2 {hostname} Error: timeout exceeded, closing"


_MAIL_DSN = re.compile(r"\s+(?:RET|ENVID)=\S*", re.IGNORECASE)
_RCPT_DSN = re.compile(r"\s+(?:NOTIFY|ORCPT)=\S*", re.IGNORECASE)

Verb = Callable[[str | None], Awaitable[None]]
_CLOCK_SLACK_SECONDS = 0.001


def _without_dsn(arg: str | None, pattern: re.Pattern[str]) -> str | None:
    return pattern.sub("", arg) if arg else arg


class TicketSMTP(FastPaths):
    """aiosmtpd's SMTP with enhanced status codes on its own size replies, session caps and
    the clocks of RFC 5321 4.5.3.2.

    `max_commands` bounds the commands of one connection in total, whichever they are (the
    client gets `421 4.7.0` and the connection is closed). Sessions are capped in total and
    per source (`Sources`). A session quiet for `clocks.command` seconds is closed; before
    MAIL it has besides `clocks.idle` seconds from its start or its last mail (NOOP, RSET,
    EHLO do not count); in all `clocks.lifetime` (a mail whose DATA is under way finishes
    first, then the session is closed); DATA has clocks of its own (`_data_check`). Each
    ends the session with a 421.
    """

    # RFC 5321 allows 1000 bytes a line, but real clients send longer ones (Postfix takes
    # them too); smtp.max_line_bytes sets the limit per instance.
    line_length_limit = 1024 * 1024

    def __init__(
        self,
        handler: Handler,
        *,
        sessions: set[TicketSMTP],
        max_sessions: int,
        max_line_bytes: int | None = None,
        max_commands: int | None = None,
        clocks: Clocks,
        sources: Sources,
        budget: MemoryBudget,
        spool_dir: Path,
        spool_threshold: int,
        trim: MemoryTrim,
        refuse: Callable[[], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        # Every verb counts against the budget: each smtp_* method of this session is wrapped
        # before aiosmtpd looks them up on the instance (HELP still finds their help texts).
        # aiosmtpd's `command_call_limit` counts each verb apart, so it cannot bound them all.
        # The count is per connection: it survives STARTTLS, which starts a new SMTP session.
        self._max_commands = max_commands
        self._commands = 0
        for name in dir(self):
            if name.startswith("smtp_"):
                setattr(self, name, self._counted(getattr(self, name)))
        # aiosmtpd's own idle timer closes without a word and counts DATA as one command;
        # ours say 421 first. aiosmtpd's is set beyond all of ours, so it never fires.
        self.clocks = clocks
        longest = max(clocks.idle, clocks.command, clocks.lifetime, clocks.data_total)
        self._clock: asyncio.TimerHandle | None = None
        self._clock_at = 0.0
        self._started_at = 0.0
        self._progress_at = 0.0  # the session's start, or its last mail's end
        self._last_command = 0.0
        self._in_data = False
        self._close_after_data = False
        self._data_timer: asyncio.TimerHandle | None = None
        self._data_started = 0.0
        self._bytes_in = 0  # bytes received on the connection, for DATA's pace
        self._window_bytes = 0
        super().__init__(handler, timeout=2 * longest, **kwargs)
        if max_line_bytes is not None:
            self.line_length_limit = max_line_bytes
        self._sessions = sessions
        self._max_sessions = max_sessions
        self._sources = sources
        self._source: str | None = None
        self._budget = budget
        self._spool_dir = spool_dir
        self._spool_threshold = spool_threshold
        self._trim = trim
        self._over_limit = False
        # Asked when the connection is made: the reply a new session gets at once instead
        # (the daemon is stopping), or None.
        self._refuse = refuse
        self.session_id = next(_session_ids)
        self.peer = ""

    def _counted(self, verb: Verb) -> Verb:
        """`verb` (an smtp_* method), refused with 421 once the session used up its commands."""

        @functools.wraps(verb)  # keeps the HELP texts aiosmtpd reads from the method
        async def counted(arg: str | None) -> None:
            self._last_command = self.loop.time()
            self._commands += 1
            if self._max_commands is None or self._commands <= self._max_commands:
                await verb(arg)
                self._arm()  # RSET may have brought the idle limit nearer
                return
            if self._commands == self._max_commands + 1:  # say it once, to what is pipelined
                log.warning(
                    "session_closed",
                    reason="too_many_commands",
                    limit=self._max_commands,
                    session=self.session_id,
                    peer=self.peer,
                )
                await self.push(REPLY_TOO_MANY_COMMANDS.format(hostname=self.hostname))
            if self.transport is not None:
                self.transport.close()

        return counted

    # --- the session's clocks -----------------------------------------------------------------

    def _deadline(self) -> tuple[float, str]:
        """When the session ends unless something happens first, and why."""
        lifetime = (self._started_at + self.clocks.lifetime, "session_max")
        if self._in_data:  # DATA's own clocks run; the lifetime waits for its reply
            return lifetime
        idle = (self._last_command + self.clocks.command, "idle_timeout")
        envelope = self.envelope
        if envelope is None or envelope.mail_from is None:
            idle = min(idle, (self._progress_at + self.clocks.idle, "idle_before_mail"))
        return min(lifetime, idle)

    def _arm(self) -> None:
        """The timer set for the nearest deadline (a timer per deadline, not per command)."""
        at = self._deadline()[0]
        if self._clock is not None:
            if self._clock_at <= at:
                return
            self._clock.cancel()
        self._clock_at = at
        self._clock = self.loop.call_at(at, self._clock_check)

    def _clock_check(self) -> None:
        self._clock = None
        at, reason = self._deadline()
        # The timer may fire this much early (the event loop runs a timer that is due within
        # its clock resolution); closer than this to the deadline is the deadline.
        if at - self.loop.time() > _CLOCK_SLACK_SECONDS:
            self._arm()
        elif self._in_data:  # the lifetime is over, but the mail under way may finish
            self._close_after_data = True
        else:
            reply = {
                "session_max": REPLY_SESSION_TOO_LONG,
                "idle_before_mail": REPLY_IDLE_BEFORE_MAIL,
            }.get(reason, REPLY_IDLE_TIMEOUT.format(hostname=self.hostname))
            self._close(reply, reason)

    def _close(self, reply: str, reason: str, **fields: Any) -> None:
        """Say `reply` and close the connection (the transport sends what it holds first)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info("session_closed", reason=reason, session=self.session_id, peer=self.peer,
                     **fields)  # fmt: skip
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()

    def data_received(self, data: bytes) -> None:
        self._bytes_in += len(data)
        super().data_received(data)

    def _data_clock(self, *, start: bool) -> None:
        """DATA's clocks while its body is read, on (RFC 5321 4.5.3.2: a block every
        `data_block` seconds, the whole within `data_total`, here with `data_min_bytes` in
        each block) or off."""
        if self._data_timer is not None:
            self._data_timer.cancel()
            self._data_timer = None
        if start:
            self._data_started = self.loop.time()
            self._window_bytes = self._bytes_in
            self._data_timer = self.loop.call_later(self.clocks.data_block, self._data_check)

    def _data_check(self) -> None:
        now = self.loop.time()
        got = self._bytes_in - self._window_bytes
        if now - self._data_started >= self.clocks.data_total - _CLOCK_SLACK_SECONDS:
            self._close(REPLY_DATA_TOO_LONG, "data_too_long", seconds=self.clocks.data_total)
        elif got < self.clocks.data_min_bytes:
            self._close(REPLY_DATA_TOO_SLOW, "data_too_slow", received=got,
                        seconds=self.clocks.data_block)  # fmt: skip
        else:
            self._window_bytes = self._bytes_in
            at = min(now + self.clocks.data_block, self._data_started + self.clocks.data_total)
            self._data_timer = self.loop.call_at(at, self._data_check)

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS, with the TLS transport: that session already has a place.
        if self not in self._sessions:
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            self.peer = f"{host}:{peer[1]}" if isinstance(peer, tuple) and len(peer) > 1 else host
            refusal = self._refuse() if self._refuse is not None else None
            if refusal is not None:  # accepted just before the listener closed
                self._refused(transport, refusal)
                log.info("session_refused", reason="shutting_down", peer=self.peer)
                return
            if len(self._sessions) >= self._max_sessions:
                self._refused(transport, REPLY_TOO_MANY_SESSIONS)
                log.warning("session_refused", reason="too_many_sessions",
                            limit=self._max_sessions, peer=self.peer)  # fmt: skip
                return
            source = source_of(host)
            if not self._sources.enter(source):
                self._refused(transport, REPLY_TOO_MANY_FROM_SOURCE)
                log.warning("session_refused", reason="too_many_from_source",
                            limit=self._sources.limit, source=source, peer=self.peer)  # fmt: skip
                return
            self._source = source
            self._started_at = self.loop.time()
        self._sessions.add(self)
        super().connection_made(transport)
        # The idle time counts from here (again after STARTTLS, from the TLS transport).
        self._progress_at = self._last_command = self.loop.time()
        self._arm()

    def _refused(self, transport: asyncio.BaseTransport, reply: str) -> None:
        """The one reply, then closed: this session never starts."""
        self._over_limit = True
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sessions.discard(self)
        if self._source is not None:
            self._sources.leave(self._source)
            self._source = None
        if self._clock is not None:
            self._clock.cancel()
        self._data_clock(start=False)
        if self._bytes_in > LARGE_BYTES:  # its read buffer was large
            self._trim.soon()
        if self._over_limit:
            return
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._over_limit:
            return False
        result: bool | None = super().eof_received()
        return result

    # The help texts are aiosmtpd's: without them HELP would no longer list MAIL and RCPT.
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._over_budget("MAIL"):
            return
        if not self.event_handler.database_up():  # SPEC 10: the MTA keeps the mail meanwhile
            log.info("command_refused", reason="database_unavailable", verb="MAIL",
                     session=self.session_id, peer=self.peer)  # fmt: skip
            await self.push(REPLY_TEMPORARY_FAILURE)
            return
        # DSN parameters (RFC 3461) come from real MTAs; accepted and not acted upon.
        await super().smtp_MAIL(_without_dsn(arg, _MAIL_DSN))

    async def _over_budget(self, verb: str) -> bool:
        """Past smtp.memory_budget_bytes: 452 4.3.1, and True."""
        if not self._budget.exhausted:
            return False
        log.warning("command_refused", reason="memory_budget", verb=verb,
                    held=self._budget.held, limit=self._budget.limit,
                    session=self.session_id, peer=self.peer)  # fmt: skip
        await self.push(REPLY_NO_MEMORY)
        return True

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(_without_dsn(arg, _RCPT_DSN))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA as aiosmtpd does it, but the body read in chunks (see _dataread).

        A client gone meanwhile cancels this; aiosmtpd then closes the connection.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        if await self._over_budget("DATA"):
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = Spool(self._spool_dir, threshold=self._spool_threshold, budget=self._budget)
        self._in_data = True  # until answered: the idle clocks wait, the lifetime lets it end
        self._data_clock(start=True)
        try:
            state = await self.read_data_chunked(spool.write)
            self._data_clock(start=False)
            size = spool.size
            if state is DataState.OK:
                status = await self._deliver(spool)
            else:
                too_long = state is DataState.TOO_LONG
                status = REPLY_LINE_TOO_LONG if too_long else REPLY_TOO_BIG
                log.info("mail_refused", reason="line_too_long" if too_long else "too_big",
                         session=self.session_id, peer=self.peer)  # fmt: skip
        finally:
            spool.close()
            self._data_clock(start=False)
            self._in_data = False
            # A mail ended: the idle clocks start again.
            self._progress_at = self._last_command = self.loop.time()
        self.envelope = SmtpEnvelope()  # the next mail starts from MAIL
        await self.push(status)
        if size > LARGE_BYTES:
            self._trim.soon()  # what a large mail took, back to the system
        if self._close_after_data:
            self._close(REPLY_SESSION_TOO_LONG, "session_max")

    async def _deliver(self, spool: Spool) -> str:
        """The received mail to the handler, once the memory budget has room for it."""
        assert self.envelope is not None
        cost = await self._budget.processing(spool.size)
        try:
            content = spool.read()
            spool.close()
            self.envelope.content = self.envelope.original_content = content
            del content
            # The handler's hook as aiosmtpd calls it; the envelope stays until it answered
            # (the daemon's shutdown sees a mail under way by it).
            status: str = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        finally:
            self._budget.processed(cost)
            self.envelope.content = self.envelope.original_content = None
        return status

    async def push(self, status: str | bytes) -> None:
        # aiosmtpd answers an over-size mail with its own text and no enhanced code.
        if isinstance(status, bytes):
            await super().push(status)
        else:
            await super().push(REPLY_TOO_BIG if status.startswith("552 Error") else status)


class TicketLMTP(TicketSMTP, LMTP):
    """LMTP (RFC 2033) for an MTA in front (Postfix `lmtp:`): aiosmtpd's LMTP (LHLO instead of
    HELO and EHLO) with ticketmail's front; DATA gets one reply per accepted recipient."""


class Handler:
    """aiosmtpd hooks: recipients checked at RCPT, the mail handed to Intake at DATA."""

    def __init__(self, intake: Intake, config: Config) -> None:
        self.intake = intake
        self.recipients = frozenset(r.casefold() for r in config.smtp.recipients)
        self.inflight: set[asyncio.Task[Any]] = set()
        self._availability = intake.store.db.availability

    def database_up(self) -> bool:
        """The database answers (else MAIL is answered 451 4.3.0, before any DATA is sent)."""
        return self._availability.up

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.casefold() not in self.recipients:
            log.info(
                "recipient_refused",
                recipient=address,
                peer=_peer(session),
                session=getattr(server, "session_id", None),
            )
            return REPLY_BAD_RECIPIENT.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return REPLY_RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):  # pragma: no cover - decode_data is always False
            raw = str(raw).encode("utf-8", errors="surrogateescape")
        mail_from = envelope.mail_from or ""
        env = Envelope("" if mail_from == "<>" else mail_from, _once(envelope.rcpt_tos))
        # A client that disconnects cancels this hook; the mail is finished all the same,
        # so the commit point is never cut in half. The sender retries and is deduplicated.
        with structlog.contextvars.bound_contextvars(
            session=getattr(server, "session_id", None), peer=_peer(session)
        ):
            task = asyncio.ensure_future(self.intake.process(raw, env))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("mail_deferred", error=f"{type(exc).__name__}: {exc}", size=len(raw))
            return _per_recipient(server, envelope, REPLY_TEMPORARY_FAILURE)
        return _per_recipient(server, envelope, result.reply)

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp_session_error", error=f"{type(error).__name__}: {error}")
        return REPLY_TEMPORARY_FAILURE


def _once(recipients: list[str]) -> tuple[str, ...]:
    """Each recipient once (case-insensitive), the first spelling kept: a client that names
    one twice gets 250 both times (and in LMTP a reply for each), the mail keeps it once."""
    seen: dict[str, str] = {}
    for address in recipients:
        seen.setdefault(address.casefold(), address)
    return tuple(seen.values())


def _per_recipient(server: SMTP, envelope: SmtpEnvelope, reply: str) -> str:
    """LMTP answers DATA once per accepted recipient; SMTP once."""
    if isinstance(server, TicketLMTP):
        return "\r\n".join(reply for _ in envelope.rcpt_tos)
    return reply


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server context for STARTTLS, or None when no certificate is configured."""
    cert, key = config.smtp.tls_cert_file, config.smtp.tls_key_file
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{config.source}: smtp.tls_cert_file/tls_key_file: {exc.filename}: file not found"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{config.source}: smtp.tls_cert_file/tls_key_file: cannot load: {exc}"
        ) from None
    return context


class ProtocolFactory:
    """Makes one SMTP (or LMTP) protocol per connection for `loop.create_server`.

    The TLS certificate is loaded once at start; `reload_tls` swaps it for new connections.
    """

    def __init__(self, handler: Handler, config: Config, sessions: set[TicketSMTP]) -> None:
        self.handler = handler
        self.config = config
        self.sessions = sessions
        self.sources = Sources(config.smtp.max_sessions_per_ip)
        self.budget = MemoryBudget(config.smtp.memory_budget_bytes)
        self.trim = MemoryTrim()
        self.clocks = Clocks.of(config.smtp)
        config.paths.spool.mkdir(parents=True, exist_ok=True)
        self.context = tls_context(config)
        self.protocol = TicketLMTP if config.smtp.lmtp else TicketSMTP
        # Set when the daemon stops: a connection the listener accepted just before it closed
        # gets this reply and is closed, instead of a session nobody waits for.
        self.refusing: str | None = None

    def reload_tls(self) -> None:
        """Load the certificate files again; on error keep the old one (ConfigError raised)."""
        self.context = tls_context(self.config)

    def __call__(self) -> TicketSMTP:
        smtp = self.config.smtp
        return self.protocol(
            self.handler,
            sessions=self.sessions,
            max_sessions=smtp.max_sessions,
            hostname=smtp.hostname,
            ident="ticketmail ESMTP",
            data_size_limit=smtp.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            clocks=self.clocks,
            sources=self.sources,
            budget=self.budget,
            spool_dir=self.config.paths.spool,
            spool_threshold=smtp.spool_threshold_bytes,
            trim=self.trim,
            tls_context=self.context,
            require_starttls=False,
            max_commands=smtp.max_commands,
            max_line_bytes=smtp.max_line_bytes,
            refuse=self._refusal,
        )

    def _refusal(self) -> str | None:
        return self.refusing
