"""Every mail ticketmail sends: answers to customers' mails, agents' replies, status notices.

Runs inside the caller's write job (intake, or the CLI for the support team's actions), on
the writer's connection: a ticket's change, its article and every mail it sends are
committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from ticketmail.config import Config
from ticketmail.mail.msgid import MessageIds
from ticketmail.models import AttachmentView, TicketRef, User, customer_status
from ticketmail.outbound.compose import (
    OutboundFile,
    Templates,
    build_mail,
    mail_context,
    thread_references,
)
from ticketmail.rules import auto_mail_allowed, format_tag
from ticketmail.storage.dialect import Conn
from ticketmail.storage.outbox import (
    auto_replies_about,
    auto_replies_to,
    insert_outbox,
    is_suppressed,
)
from ticketmail.storage.records import ArticleRecord, OutboxRecord, Thread
from ticketmail.storage.store import Store
from ticketmail.storage.tickets import insert_article, participants, thread_of, touch_ticket
from ticketmail.storage.waiting import set_waiting

__all__ = ["Desk", "DeskResult", "Origin", "Sent", "message_ids"]

log = structlog.get_logger()


async def message_ids(config: Config, store: Store) -> MessageIds:
    """The Message-ID signer: TICKETMAIL_SECRET, else the data directory's own secret."""
    secret = config.mail.secret or await store.message_id_secret()
    return MessageIds(config.mail.message_id_domain, secret.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Origin:
    """Who acted and what they wrote, as the ticket keeps it."""

    actor: str  # the agent's address, or ticketmail's own for a status change from the CLI
    agent_name: str = ""
    message: int | None = None  # the agent's mail, when the action came by mail
    raw_sha256: str | None = None
    body_text: str | None = None  # the whole text as written, when more than what was sent
    attachments: tuple[AttachmentView, ...] = ()


@dataclass(frozen=True, slots=True)
class Sent:
    recipient: str
    lang: str
    outbox: int
    message_id: str


@dataclass(frozen=True, slots=True)
class DeskResult:
    ticket: int
    old_status: str
    status: str
    article: int
    sent: tuple[Sent, ...]
    suppressed: tuple[tuple[str, str], ...] = ()  # (recipient, reason)


class Desk:
    """The mails of one configuration, its templates and its Message-ID signer."""

    def __init__(self, config: Config, templates: Templates, ids: MessageIds) -> None:
        self.config = config
        self.templates = templates
        self.ids = ids

    def _context(
        self,
        user: User,
        *,
        ticket: int | None,
        subject: str,
        previous: int | None = None,
        status: str = "",
        old_status: str = "",
        note: str = "",
        text: str = "",
        agent_name: str = "",
        attachments: Sequence[str] = (),
    ) -> dict[str, Any]:
        cfg = self.config
        web = cfg.web.base_url.rstrip("/") if cfg.web.enabled else ""
        return mail_context(
            ticket_url=f"{web}/tickets/{ticket}" if web and ticket is not None else "",
            ticket=ticket,
            tag=format_tag(cfg.tickets.subject_tag, ticket) if ticket is not None else "",
            subject=subject,
            name=user.name,
            customer=user.customer.name,
            support_address=cfg.smtp.recipients[0],
            offer_address=cfg.policy.offer_address,
            team=cfg.mail.from_name,
            reopen_days=cfg.tickets.reopen_days,
            previous=previous,
            status=customer_status(status),  # customers see a waiting ticket as open
            old_status=customer_status(old_status),
            note=note,
            text=text,
            agent_name=agent_name,
            attachments=attachments,
        )

    def _outbox(
        self,
        kind: str,
        user: User,
        *,
        ticket: int | None,
        context: dict[str, Any],
        in_reply_to: str | None,
        references: tuple[str, ...],
        auto_submitted: str | None,
        files: Sequence[OutboundFile] = (),
        now: datetime,
    ) -> OutboxRecord:
        cfg = self.config
        lang = _lang(cfg, user)
        subject, body = self.templates.render(kind, lang=lang, context=context)
        out = build_mail(
            kind=kind,
            subject=subject,
            body=body,
            sender_name=cfg.mail.from_name,
            sender_address=cfg.mail.from_address,
            recipient=user.email,
            recipient_name=user.name,
            message_id=self.ids.new(ticket),
            in_reply_to=in_reply_to,
            references=references,
            auto_submitted=auto_submitted,
            loop_token=cfg.mail.from_address,
            lang=lang,
            now=now,
            attachments=files,
        )
        return OutboxRecord(
            kind=kind,
            ticket=ticket,
            recipient=out.recipient,
            sender=out.sender,
            message_id=out.message_id,
            subject=out.subject,
            raw=out.raw,
            automatic=auto_submitted is not None,
        )

    def account_mail(self, kind: str, /, *, user: User, link: str, now: datetime) -> OutboxRecord:
        """A mail of the portal's about an account (`account_confirm`, `password_reset`,
        `unknown_customer`): automatic, about no ticket; `link` is the one to follow."""
        context = self._context(user, ticket=None, subject="")
        context.update(link=link, customer_number=user.customer.number)
        return self._outbox(
            kind, user, ticket=None, context=context, in_reply_to=None, references=(),
            auto_submitted="auto-generated", now=now,
        )  # fmt: skip

    def acknowledgement(
        self,
        kind: str,
        /,
        *,
        user: User,
        ticket: int | None,
        subject: str,
        answering: str,
        root: str | None,
        previous: int | None = None,
        now: datetime,
    ) -> OutboxRecord:
        """The automatic answer to a customer's mail (`ticket_created`, `ticket_reopened`,
        ...), threaded under that mail (`answering`); `root`: the ticket's first mail. The
        caller queues it with the mail (`mails.record_mail`) and logs it (`queued`)."""
        context = self._context(user, ticket=ticket, subject=subject, previous=previous)
        return self._outbox(
            kind, user, ticket=ticket, context=context, in_reply_to=answering,
            references=thread_references(root, answering), auto_submitted="auto-replied",
            now=now,
        )  # fmt: skip

    def queued(self, record: OutboxRecord, entry: int, user: User) -> None:
        """Log an automatic answer queued as outbox `entry`."""
        log.info("notice_queued", kind=record.kind, outbox=entry, recipient=user.email,
                 ticket=record.ticket, lang=_lang(self.config, user))  # fmt: skip

    def _ticket_mail(
        self,
        kind: str,
        ticket: TicketRef,
        user: User,
        thread: Thread,
        *,
        auto_submitted: str | None,
        files: Sequence[OutboundFile] = (),
        now: datetime,
        **values: Any,
    ) -> OutboxRecord:
        """A mail of the support team's about a ticket, threaded under its latest mail."""
        context = self._context(
            user, ticket=ticket.number, subject=ticket.subject, old_status=ticket.status,
            **values,
        )  # fmt: skip
        return self._outbox(
            kind, user, ticket=ticket.number, context=context, in_reply_to=thread.latest,
            references=thread_references(thread.root, thread.latest),
            auto_submitted=auto_submitted, files=files, now=now,
        )  # fmt: skip

    def reply(
        self,
        conn: Conn,
        ticket: TicketRef,
        /,
        *,
        text: str,
        files: Sequence[OutboundFile],
        status: str,
        origin: Origin,
        now: datetime,
    ) -> DeskResult:
        """An agent's answer: one `agent_reply` to each participant, written by a person.

        Not rate-limited and not marked automatic: an agent chose to send it.
        """
        users = participants(conn, ticket.number)
        thread = thread_of(conn, ticket.number)
        names = [f.filename for f in files]
        sent: list[Sent] = []
        subject = ticket.subject
        for user in users:
            record = self._ticket_mail(
                "agent_reply", ticket, user, thread, auto_submitted=None, files=files, now=now,
                status=status, text=text, agent_name=origin.agent_name, attachments=names,
            )  # fmt: skip
            entry = insert_outbox(conn, record, now=now)
            sent.append(Sent(user.email, _lang(self.config, user), entry, record.message_id))
            subject = record.subject if len(sent) == 1 else subject
        touch_ticket(conn, ticket.number, status=status, by=origin.actor, now=now)
        article = self._article(
            conn, ticket, thread, origin, sent, subject=subject, sent_text=text,
            status=status, automatic=False, now=now,
        )  # fmt: skip
        log.info("agent_reply_queued", ticket=ticket.number, agent=origin.actor,
                 recipients=[s.recipient for s in sent], status=status,
                 old_status=ticket.status, files=len(files))  # fmt: skip
        return DeskResult(ticket.number, ticket.status, status, article, tuple(sent))

    def change_status(
        self,
        conn: Conn,
        ticket: TicketRef,
        /,
        *,
        status: str,
        note: str,
        origin: Origin,
        now: datetime,
        until: datetime | None = None,
    ) -> DeskResult:
        """Set a ticket's status and tell each participant (`status_changed`, rate-limited);
        `waiting` needs `until`, the time it is open again.

        The status it already has changes nothing and mails nobody (article 0); with a
        `note`, the note is mailed as an answer would be (SPEC 9.1). So does a change the
        customers cannot see (open ↔ waiting, waiting with a new time): it is kept in the
        ticket's history only."""
        if customer_status(status) == customer_status(ticket.status) and (
            status != ticket.status or status == "waiting"
        ):
            changed = self._set_status(conn, ticket.number, status, until, origin, now)
            log.info("status_changed_quietly", ticket=ticket.number, by=origin.actor,
                     status=status, old_status=ticket.status, changed=changed,
                     until=until.isoformat() if until else None)  # fmt: skip
            if note:
                return self.reply(conn, ticket, text=note + "\n", files=(), status=status,
                                  origin=origin, now=now)  # fmt: skip
            return DeskResult(ticket.number, ticket.status, status, 0, ())
        if status == ticket.status:
            if note:
                return self.reply(conn, ticket, text=note + "\n", files=(), status=status,
                                  origin=origin, now=now)  # fmt: skip
            log.info("status_unchanged", ticket=ticket.number, by=origin.actor, status=status)
            return DeskResult(ticket.number, ticket.status, status, 0, ())
        cfg = self.config
        since = now - timedelta(hours=1)
        users = participants(conn, ticket.number)
        thread = thread_of(conn, ticket.number)
        sent: list[Sent] = []
        suppressed: list[tuple[str, str]] = []
        subject = ticket.subject
        for user in users:
            reason = auto_mail_allowed(
                suppressed=is_suppressed(conn, user.email, now=now),
                to_address=auto_replies_to(conn, user.email, since=since),
                for_ticket=auto_replies_about(conn, ticket.number, since=since),
                max_per_address=cfg.policy.max_auto_replies_per_hour,
                max_per_ticket=cfg.policy.max_auto_replies_per_ticket_per_hour,
            )
            if reason is not None:
                suppressed.append((user.email, reason))
                log.info("notice_suppressed", kind="status_changed", reason=reason,
                         recipient=user.email, ticket=ticket.number)  # fmt: skip
                continue
            record = self._ticket_mail(
                "status_changed", ticket, user, thread, auto_submitted="auto-generated",
                now=now, status=status, note=note,
            )  # fmt: skip
            entry = insert_outbox(conn, record, now=now)
            sent.append(Sent(user.email, _lang(cfg, user), entry, record.message_id))
            subject = record.subject if len(sent) == 1 else subject
        self._set_status(conn, ticket.number, status, until, origin, now)
        article = self._article(
            conn, ticket, thread, origin, sent, subject=subject, sent_text=note,
            status=status, automatic=True, now=now,
        )  # fmt: skip
        log.info("status_changed", ticket=ticket.number, by=origin.actor, status=status,
                 old_status=ticket.status, recipients=[s.recipient for s in sent],
                 suppressed=[r for r, _ in suppressed])  # fmt: skip
        return DeskResult(
            ticket.number, ticket.status, status, article, tuple(sent), tuple(suppressed)
        )

    @staticmethod
    def _set_status(
        conn: Conn,
        number: int,
        status: str,
        until: datetime | None,
        origin: Origin,
        now: datetime,
    ) -> bool:
        """The ticket's new status (waiting: until `until`), in its history; whether it
        changed."""
        if status == "waiting":
            if until is None:
                raise ValueError("waiting needs the time it ends")
            return set_waiting(conn, number, until, by=origin.actor, now=now)
        touch_ticket(conn, number, status=status, by=origin.actor, now=now)
        return True

    def _article(
        self,
        conn: Conn,
        ticket: TicketRef,
        thread: Thread,
        origin: Origin,
        sent: Sequence[Sent],
        *,
        subject: str,
        sent_text: str,
        status: str,
        automatic: bool,
        now: datetime,
    ) -> int:
        """The outbound article: what was sent, to whom, and the whole text as written."""
        note = f"status {ticket.status} → {status}" if status != ticket.status else None
        return insert_article(
            conn,
            ticket.number,
            ArticleRecord(
                direction="out",
                automatic=automatic,
                sender=origin.actor,
                to=tuple(s.recipient for s in sent),
                cc=(),
                subject=subject,
                date=now,
                message_id=sent[0].message_id if sent else "",
                in_reply_to=(thread.latest,) if thread.latest else (),
                references=thread_references(thread.root, thread.latest),
                body_text=origin.body_text if origin.body_text is not None else sent_text,
                reply_text=sent_text,
                raw_sha256=origin.raw_sha256,
                attachments=origin.attachments,
                note=note,
            ),
            message=origin.message,
            now=now,
        )


def _lang(config: Config, user: User) -> str:
    return user.lang or config.templates.default_language
