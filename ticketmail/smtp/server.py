"""The SMTP front: aiosmtpd server protocol and handler, replies after the outcome is durable."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Session, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from ticketmail.config import Config
from ticketmail.errors import ConfigError
from ticketmail.intake.process import Envelope, Intake
from ticketmail.smtp._dataread import DataState
from ticketmail.smtp._private import FastPaths
from ticketmail.smtp.replies import (
    REPLY_BAD_RECIPIENT,
    REPLY_LINE_TOO_LONG,
    REPLY_RECIPIENT_OK,
    REPLY_TEMPORARY_FAILURE,
    REPLY_TOO_BIG,
    REPLY_TOO_MANY_SESSIONS,
)

__all__ = ["Handler", "ProtocolFactory", "TicketLMTP", "TicketSMTP", "tls_context"]

log = structlog.get_logger()
_session_ids = itertools.count(1)

# Replies of the SMTP front itself (RFC 3463 codes), beside those in replies.py.
REPLY_TOO_MANY_COMMANDS = "421 4.7.0 {hostname} Too many commands in this session, closing"
REPLY_IDLE_TIMEOUT = "421 4.4.2 {hostname} Error: timeout exceeded, closing"


_MAIL_DSN = re.compile(r"\s+(?:RET|ENVID)=\S*", re.IGNORECASE)
_RCPT_DSN = re.compile(r"\s+(?:NOTIFY|ORCPT)=\S*", re.IGNORECASE)

Verb = Callable[[str | None], Awaitable[None]]
# The idle timer may fire this much early (the event loop runs a timer that is due within
# its clock resolution); closer than this to the timeout is the timeout.
_IDLE_SLACK_SECONDS = 0.001


def _without_dsn(arg: str | None, pattern: re.Pattern[str]) -> str | None:
    return pattern.sub("", arg) if arg else arg


class TicketSMTP(FastPaths):
    """aiosmtpd's SMTP with enhanced status codes on its own size replies and a session cap.

    `max_commands` bounds the commands of one connection in total, whichever they are (the
    client gets `421 4.7.0` and the connection is closed); a connection idle for `timeout`
    seconds is answered `421 4.4.2` and closed.
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
        timeout: float = 300.0,
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
        # aiosmtpd's own idle timer closes without a word; ours says 421 first (RFC 5321
        # 4.5.3.2). Both count from the last command; aiosmtpd's, twice as long, never fires.
        self._idle_seconds = timeout
        self._idle: asyncio.TimerHandle | None = None
        self._last_command = 0.0
        super().__init__(handler, timeout=2 * timeout, **kwargs)
        if max_line_bytes is not None:
            self.line_length_limit = max_line_bytes
        self._sessions = sessions
        self._max_sessions = max_sessions
        self._over_limit = False
        # Asked when the connection is made: the reply a new session gets at once instead
        # (the daemon is stopping), or None.
        self._refuse = refuse
        self.session_id = next(_session_ids)

    def _counted(self, verb: Verb) -> Verb:
        """`verb` (an smtp_* method), refused with 421 once the session used up its commands."""

        @functools.wraps(verb)  # keeps the HELP texts aiosmtpd reads from the method
        async def counted(arg: str | None) -> None:
            self._last_command = self.loop.time()
            self._commands += 1
            if self._max_commands is None or self._commands <= self._max_commands:
                await verb(arg)
                return
            if self._commands == self._max_commands + 1:  # say it once, to what is pipelined
                log.warning(
                    "session_closed",
                    reason="too_many_commands",
                    limit=self._max_commands,
                    session=self.session_id,
                )
                await self.push(REPLY_TOO_MANY_COMMANDS.format(hostname=self.hostname))
            if self.transport is not None:
                self.transport.close()

        return counted

    def _idle_check(self) -> None:
        """Close the session `timeout` seconds after its last command (a timer per timeout,
        not one per command: a command only notes its time)."""
        left = self._last_command + self._idle_seconds - self.loop.time()
        if left > _IDLE_SLACK_SECONDS:
            self._idle = self.loop.call_later(left, self._idle_check)
            return
        # The transport sends what it holds before closing.
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info("session_closed", reason="idle_timeout", session=self.session_id)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(
                REPLY_IDLE_TIMEOUT.format(hostname=self.hostname).encode("ascii") + b"\r\n"
            )
            transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS, with the TLS transport: that session already has a place.
        if self not in self._sessions:
            refusal = self._refuse() if self._refuse is not None else None
            if refusal is not None:  # accepted just before the listener closed
                self._refused(transport, refusal)
                log.info("session_refused", reason="shutting_down")
                return
            if len(self._sessions) >= self._max_sessions:
                self._refused(transport, REPLY_TOO_MANY_SESSIONS)
                log.warning("session_refused", reason="too_many_sessions", limit=self._max_sessions)
                return
        self._sessions.add(self)
        super().connection_made(transport)
        # The idle time counts from here (again after STARTTLS, from the TLS transport).
        self._last_command = self.loop.time()
        if self._idle is None:
            self._idle = self.loop.call_later(self._idle_seconds, self._idle_check)

    def _refused(self, transport: asyncio.BaseTransport, reply: str) -> None:
        """The one reply, then closed: this session never starts."""
        self._over_limit = True
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sessions.discard(self)
        if self._idle is not None:
            self._idle.cancel()
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
        # DSN parameters (RFC 3461) come from real MTAs; accepted and not acted upon.
        await super().smtp_MAIL(_without_dsn(arg, _MAIL_DSN))

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
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        result = await self.read_data_chunked()
        if result.state is DataState.OK:
            self.envelope.content = result.content
            self.envelope.original_content = result.content
            # The handler's hook as aiosmtpd calls it; the envelope stays until it answered
            # (the daemon's shutdown sees a mail under way by it).
            status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        elif result.state is DataState.TOO_LONG:
            status = REPLY_LINE_TOO_LONG
        else:
            status = REPLY_TOO_BIG
        self.envelope = SmtpEnvelope()  # the next mail starts from MAIL
        await self.push(status)

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
        env = Envelope("" if mail_from == "<>" else mail_from, tuple(envelope.rcpt_tos))
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
            timeout=smtp.timeout_seconds,
            tls_context=self.context,
            require_starttls=False,
            max_commands=smtp.max_commands,
            max_line_bytes=smtp.max_line_bytes,
            refuse=self._refusal,
        )

    def _refusal(self) -> str | None:
        return self.refusing
