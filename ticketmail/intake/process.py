"""One inbound mail, start to finish: parse, decide, store durably, queue the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from ticketmail.config import Config
from ticketmail.intake.admission import (
    AdmissionPool,
    Admitter,
    Envelope,
    Refused,
    Unverified,
    route_policy,
)
from ticketmail.intake.route import (
    Action,
    Decision,
    Facts,
    classify,
    clean_subject,
    decide,
    find_ticket_numbers,
)
from ticketmail.mail.bounce import read_bounce
from ticketmail.mail.msgid import MessageIds
from ticketmail.mail.parse import ParsedMail
from ticketmail.metrics import Metrics
from ticketmail.models import Agent, AttachmentView, User
from ticketmail.outbound.actions import Desk, Origin, message_ids
from ticketmail.outbound.agents import customer_wrote
from ticketmail.outbound.compose import OutboundFile, Templates
from ticketmail.smtp.replies import (
    REPLY_ACCEPTED,
    REPLY_AGENT_BAD_STATUS,
    REPLY_AGENT_EMPTY,
    REPLY_AGENT_NO_TAG,
    REPLY_AGENT_UNKNOWN_TICKET,
    REPLY_HELD,
    REPLY_NO_CONTRACT,
    REPLY_NO_SENDER,
    REPLY_NOT_REGISTERED,
    REPLY_PENDING_APPROVAL,
    REPLY_TICKET,
    REPLY_UNVERIFIED,
)
from ticketmail.storage.availability import DatabaseUnavailable, unavailable
from ticketmail.storage.blobs import Blobs
from ticketmail.storage.dialect import Conn
from ticketmail.storage.mails import mail_facts, next_ticket_number, record_mail
from ticketmail.storage.outbox import mark_bounced, suppress
from ticketmail.storage.records import (
    ArticleRecord,
    MailFacts,
    MessageRecord,
    NewTicket,
    OutboxRecord,
    Reference,
)
from ticketmail.storage.store import Store
from ticketmail.storage.tickets import thread_of

__all__ = ["Envelope", "Intake", "IntakeResult", "route_policy"]

log = structlog.get_logger()

NO_SUBJECT = "(no subject)"
MAX_TICKET_SUBJECT = 200


def _ticket_subject(subject: str) -> str:
    """A ticket's subject: bounded, so a 200 KB Subject header does not travel into mails."""
    if not subject:
        return NO_SUBJECT
    if len(subject) <= MAX_TICKET_SUBJECT:
        return subject
    return subject[: MAX_TICKET_SUBJECT - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class IntakeResult:
    reply: str
    outcome: str
    ticket: int | None = None
    queued: int = 0


@dataclass(frozen=True, slots=True)
class _Kept:
    """An admitted mail on its way to the database: its raw blob and attachments are stored."""

    mail: ParsedMail
    envelope: Envelope
    raw: bytes
    raw_blob: tuple[str, int]  # (sha256, size)
    files: tuple[AttachmentView, ...]


@dataclass(frozen=True, slots=True)
class _Decided:
    """Routing's decision on a mail, with the facts it was made on."""

    decision: Decision
    facts: Facts


def _references(mail: ParsedMail, ids: MessageIds) -> tuple[Reference, ...]:
    """What the mail's In-Reply-To/References name, in that order (at most 20).

    An ID of ours counts when its signature verifies (it names its ticket) or when we sent it
    (signed under an earlier secret); one of our shape that is neither is forged and names
    nothing. Any other ID names the ticket that received a mail with it.
    """
    found: list[Reference] = []
    for mid in [*mail.in_reply_to, *reversed(mail.references)][:20]:
        if not ids.looks_own(mid):
            found.append(("any", mid))
            continue
        number = ids.verify(mid)
        if number:
            found.append(("number", number))
        elif number is None:
            found.append(("sent", mid))
    return tuple(found)


def _message_record(
    kept: _Kept, outcome: str, reason: str, *, ticket: int | None, reply: str
) -> MessageRecord:
    raw_sha256, size = kept.raw_blob
    return MessageRecord(
        envelope_from=kept.envelope.mail_from,
        envelope_to=kept.envelope.rcpt_tos,
        header_from=kept.mail.from_addr,
        message_id=kept.mail.message_id,
        raw_sha256=raw_sha256,
        size=size,
        outcome=outcome,
        reason=reason,
        ticket=ticket,
        reply=reply,
    )


def _facts(known: MailFacts, now: datetime) -> Facts:
    sender = known.sender
    return Facts(
        now=now,
        sender=sender.user if sender else None,
        agent=sender.agent if sender else None,
        tagged=known.tagged,
        referenced=known.referenced,
        recent_auto_replies_to_sender=sender.recent_auto_replies if sender else 0,
        sender_suppressed=sender.suppressed if sender else False,
    )


class Intake:
    """Turns raw mail into tickets. `process` never raises except when nothing could be kept."""

    def __init__(
        self,
        config: Config,
        store: Store,
        blobs: Blobs,
        templates: Templates,
        *,
        clock: Callable[[], datetime],
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.templates = templates
        self.clock = clock
        self.policy = route_policy(config)
        self.admitter = Admitter(
            config, database=store.target, blobs=blobs, availability=store.db.availability
        )
        self.pool: AdmissionPool | None = None  # worker processes, when the daemon has them
        self.on_queued = on_queued
        self._ids: MessageIds | None = None
        self.metrics = Metrics(node=config.node_name)  # what /metrics reports: the web shares it

    async def message_ids(self) -> MessageIds:
        """The Message-ID signer (its secret may live in the database: read once)."""
        if self._ids is None:
            self._ids = await message_ids(self.config, self.store)
        return self._ids

    def _desk(self) -> Desk:
        """Inside a write job: the signer was read before it (reading may write the secret)."""
        assert self._ids is not None, "message_ids() must be awaited before the write job"
        return Desk(self.config, self.templates, self._ids)

    async def process(self, raw: bytes, envelope: Envelope) -> IntakeResult:
        """Decide and store; on an unexpected error keep the mail in the quarantine.

        Raises only when even the quarantine could not be written, or when the database is
        away (DatabaseUnavailable: not quarantined, since the mail may have been stored by a
        COMMIT whose outcome is unknown; the retry is then a duplicate); the caller answers 451.
        """
        try:
            result = await self.handle(raw, envelope)
        except Exception as exc:
            if unavailable(exc):  # the SMTP front logs it and answers 451
                raise DatabaseUnavailable("the database is unavailable") from exc
            log.error("intake_failed", error=f"{type(exc).__name__}: {exc}", size=len(raw))
            entry = await self.quarantine(raw, envelope, error=f"{type(exc).__name__}: {exc}")
            result = IntakeResult(REPLY_HELD.format(entry=entry), "quarantined")
        self.metrics.mail(result.outcome)  # every mail's outcome, counted here only
        if result.queued and self.on_queued is not None:
            self.on_queued()
        return result

    async def quarantine(self, raw: bytes, envelope: Envelope, *, error: str) -> int:
        blob = await asyncio.to_thread(self.blobs.put, raw)
        entry = await self.store.add_quarantine(
            envelope_from=envelope.mail_from,
            envelope_to=envelope.rcpt_tos,
            raw_sha256=blob.sha256,
            size=blob.size,
            error=error,
            now=self.clock(),
        )
        log.error("mail_quarantined", entry=entry, sha256=blob.sha256)
        return entry

    async def handle(
        self, raw: bytes, envelope: Envelope, *, sender_vouched: bool = False
    ) -> IntakeResult:
        """Decide and store one mail; raises on any unexpected error (nothing half-stored).

        `sender_vouched`: an admin released the mail, so the sender check is skipped.
        """
        await self.message_ids()  # read before the write job: `_known` and the desk use it
        now = self.clock()
        if self.pool is not None:
            admitted = await self.pool.admit(raw, envelope, sender_vouched=sender_vouched, now=now)
        else:
            admitted = await asyncio.to_thread(
                self.admitter.admit, raw, envelope, sender_vouched=sender_vouched, now=now
            )
        if isinstance(admitted, Refused):
            return self._rejected(admitted.mail, admitted.reason, None, detail=admitted.detail)
        if isinstance(admitted, Unverified):
            return await self._unverified(raw, admitted.mail, envelope, admitted.reason)
        mail, raw_blob, files = admitted.mail, admitted.raw_sha256, admitted.files
        now = self.clock()
        kept = _Kept(mail, envelope, raw, (raw_blob, len(raw)), files)
        # Decided and stored in one job on the writer thread, committed together with the
        # mails that arrived meanwhile; the trip first makes their blobs (written by the
        # admission, not yet fsync'd) durable, with one syncfs for all.
        result, decision = await self.store.write(
            lambda conn: self._store(conn, kept, now),
            flush=self.blobs.sync,
            alongside=self._keys(mail),
        )
        if decision is not None:
            log.info(
                "mail_accepted",
                outcome=result.outcome,
                reason=decision.reason,
                ticket=result.ticket,
                sender=mail.from_addr,
                message_id=mail.message_id,
                automatic=decision.automatic,
                signals=list(decision.signals),
                notice=decision.notice,
                suppressed=decision.suppressed,
                attachments=len(files),
                size=len(raw),
            )
        return result

    def _keys(self, mail: ParsedMail) -> tuple[str, ...]:
        """What the mail's job holds against other nodes' jobs (PostgreSQL; it runs beside
        them, `Database.write`): its Message-ID, so that the same mail delivered to two nodes
        at once is stored once (the second finds the first's, SPEC 4.5), and the tickets its
        subject tags, so that two mails to one ticket change it one after the other. A new
        ticket's number needs no key (`next_ticket_number`)."""
        tag = self.config.tickets.subject_tag
        numbers = find_ticket_numbers(mail.subject, tag)[:10]
        keys = [f"ticket:{n}" for n in numbers]
        if mail.message_id:
            keys.append(f"mail:{mail.message_id}")
        return tuple(keys)

    def _known(self, conn: Conn, kept: _Kept, now: datetime) -> MailFacts:
        """What the database knows of the mail: seen before? its sender, its tickets."""
        assert self._ids is not None
        mail = kept.mail
        return mail_facts(
            conn,
            message_id=mail.message_id,
            header_from=mail.from_addr,
            numbers=find_ticket_numbers(mail.subject, self.config.tickets.subject_tag)[:10],
            references=_references(mail, self._ids),
            since=now - timedelta(hours=1),
            now=now,
        )

    def _decide(self, kept: _Kept, known: MailFacts, now: datetime) -> IntakeResult | _Decided:
        """The duplicate check, then routing; an IntakeResult when the mail stops here."""
        mail = kept.mail
        if known.previous is not None:
            log.info("mail_duplicate", message_id=mail.message_id, sender=mail.from_addr)
            return IntakeResult(known.previous[0], "duplicate", known.previous[1])
        assert self._ids is not None
        facts = _facts(known, now)
        cls = classify(
            mail,
            envelope_from=kept.envelope.mail_from,
            policy=self.policy,
            own_message_id=(self._ids.is_genuine(mail.message_id) or known.sent_by_us),
        )
        decision = decide(mail, facts, cls, self.policy)
        if decision.action is Action.REJECT:
            return self._rejected(mail, decision.reason, facts.sender, detail=decision.detail)
        return _Decided(decision, facts)

    def _store(
        self, conn: Conn, kept: _Kept, now: datetime
    ) -> tuple[IntakeResult, Decision | None]:
        """On the writer thread: decide and store the mail."""
        decided = self._decide(kept, self._known(conn, kept, now), now)
        if isinstance(decided, IntakeResult):
            return decided, None
        decision = decided.decision
        if decision.action is Action.AGENT_REPLY:
            return self._agent_reply(conn, kept, decision, decided.facts.agent, now), decision
        if decision.reason == "bounce":
            self._record_bounce(conn, kept.raw, kept.mail, now)
        return self._apply(conn, kept, decided, now), decision

    async def _unverified(
        self, raw: bytes, mail: ParsedMail, envelope: Envelope, reason: str
    ) -> IntakeResult:
        """policy.unverified: refuse, or keep the mail held until an admin decides."""
        if self.config.policy.unverified == "reject":
            log.info("mail_rejected", reason="unverified_sender", detail=reason,
                     sender=mail.from_addr, message_id=mail.message_id)  # fmt: skip
            return IntakeResult(REPLY_UNVERIFIED.format(address=mail.from_addr), "rejected")
        blob = await asyncio.to_thread(self.blobs.put, raw)
        entry = await self.store.add_held(
            envelope_from=envelope.mail_from,
            envelope_to=envelope.rcpt_tos,
            sender=mail.from_addr,
            raw_sha256=blob.sha256,
            size=blob.size,
            reason=reason,
            now=self.clock(),
        )
        log.warning("mail_held", entry=entry, reason=reason, sender=mail.from_addr,
                    message_id=mail.message_id)  # fmt: skip
        return IntakeResult(REPLY_HELD.format(entry=f"H{entry}"), "held")

    def _rejected(
        self, mail: ParsedMail, reason: str, user: User | None, *, detail: str = ""
    ) -> IntakeResult:
        url = self.config.registration_url
        agent_replies = {
            "agent_no_tag": REPLY_AGENT_NO_TAG.format(tag=self.config.tickets.subject_tag),
            "agent_unknown_ticket": REPLY_AGENT_UNKNOWN_TICKET,
            "agent_bad_status": REPLY_AGENT_BAD_STATUS.format(word=_ascii(detail)[:40]),
            "agent_empty": REPLY_AGENT_EMPTY,
        }
        if reason in agent_replies:
            reply = agent_replies[reason]
        elif reason == "pending_approval":
            reply = REPLY_PENDING_APPROVAL.format(address=mail.from_addr)
        elif reason == "no_contract":
            reply = REPLY_NO_CONTRACT.format(
                address=mail.from_addr, offer=self.config.policy.offer_address
            )
        elif mail.from_addr:
            reply = REPLY_NOT_REGISTERED.format(address=mail.from_addr, url=url)
        else:
            reply = REPLY_NO_SENDER.format(url=url)
        log.info(
            "mail_rejected",
            reason=reason,
            sender=mail.from_addr,
            message_id=mail.message_id,
            customer=user.customer.number if user else None,
        )
        return IntakeResult(reply, "rejected")

    def _record_bounce(self, conn: Conn, raw: bytes, mail: ParsedMail, now: datetime) -> None:
        """Mark the outbox entries a bounce names; block the address after a permanent one."""
        report = read_bounce(raw, mail)
        if report.delayed:  # a delay warning: the relay is still trying
            log.info("bounce_delay_notice", status=report.status, named=len(report.message_ids))
            return
        if not report.failed:  # a report of a delivery (a mail service's notification)
            log.info("delivery_notice", reason=report.reason, named=len(report.message_ids))
            return
        bounced = mark_bounced(conn, report.message_ids, reason=report.reason)
        block = timedelta(days=self.config.policy.bounce_block_days)
        blocked: list[str] = []
        if report.permanent and block:
            for _, recipient in bounced:
                suppress(conn, recipient, until=now + block, reason=report.reason, now=now)
                blocked.append(recipient)
        log.info("bounce_recorded", status=report.status, permanent=report.permanent,
                 outbox=[entry for entry, _ in bounced], blocked=blocked,
                 named=len(report.message_ids))  # fmt: skip

    def _apply(self, conn: Conn, kept: _Kept, decided: _Decided, now: datetime) -> IntakeResult:
        """Store the mail as decided (any action but an agent's reply), with its notice."""
        mail, decision, user = kept.mail, decided.decision, decided.facts.sender
        raw_sha256 = kept.raw_blob[0]
        ticket: int | None = None
        subject = _ticket_subject(clean_subject(mail.subject, self.config.tickets.subject_tag))
        outcome = {
            Action.DISCARD: "discarded",
            Action.NO_CONTRACT: "no_contract",
            Action.NEW_TICKET: "ticket_created",
            Action.APPEND: "ticket_updated",
        }[decision.action]
        new_ticket: NewTicket | None = None
        touch: tuple[int, str | None] | None = None
        if decision.action is Action.NEW_TICKET:
            assert user is not None
            ticket = next_ticket_number(conn, first_number=self.config.tickets.first_number)
            new_ticket = NewTicket(
                ticket,
                customer=user.customer.number,
                requester=user.email,
                subject=subject,
                automatic=decision.automatic,
                previous_number=decision.previous_ticket,
            )
        elif decision.action is Action.APPEND:
            assert decision.ticket is not None
            ticket = decision.ticket.number
            subject = decision.ticket.subject
            touch = (ticket, decision.new_status)

        reply = REPLY_TICKET.format(number=ticket) if ticket is not None else REPLY_ACCEPTED
        article: ArticleRecord | None = None
        if ticket is not None:
            note = None
            if decision.previous_ticket is not None:
                note = f"Follow-up to closed ticket {decision.previous_ticket}"
            article = ArticleRecord(
                direction="in",
                automatic=decision.automatic,
                sender=mail.from_addr,
                to=mail.to,
                cc=mail.cc,
                subject=mail.subject,
                date=mail.date,
                message_id=mail.message_id,
                in_reply_to=mail.in_reply_to,
                references=mail.references,
                body_text=mail.body_text,
                reply_text=mail.reply_text,
                raw_sha256=raw_sha256,
                attachments=kept.files,
                note=note,
                flags=mail.defects,
            )
        message = _message_record(kept, outcome, decision.reason, ticket=ticket, reply=reply)
        desk = self._desk()
        notice: OutboxRecord | None = None
        if decision.notice is not None and user is not None:
            # Threaded under the mail answered; the ticket's first mail heads the References
            # (a new ticket's first mail is this one: nothing to read).
            if decision.action is Action.NEW_TICKET or ticket is None:
                root = mail.message_id or None
            else:
                root = thread_of(conn, ticket).root
            notice = desk.acknowledgement(
                decision.notice, user=user, ticket=ticket, subject=subject,
                answering=mail.message_id, root=root, previous=decision.previous_ticket,
                now=now,
            )  # fmt: skip
        recorded = record_mail(
            conn,
            message,
            new_ticket=new_ticket,
            touch=touch,
            article=article,
            notice=notice,
            now=now,
        )
        queued = 0
        if (
            article is not None
            and ticket is not None
            and user is not None
            and not decision.automatic
        ):
            queued += customer_wrote(
                conn, new=new_ticket is not None, ticket=ticket, user=user,
                text=mail.reply_text, config=self.config, templates=self.templates,
                ids=desk.ids, now=now,
            )  # fmt: skip
        if notice is not None and user is not None:
            assert recorded.outbox is not None
            desk.queued(notice, recorded.outbox, user)
            queued += 1
        elif decision.suppressed is not None:
            log.info(
                "notice_suppressed",
                reason=decision.suppressed,
                recipient=mail.from_addr,
                ticket=ticket,
            )
        return IntakeResult(reply, outcome, ticket, queued)

    def _agent_reply(
        self,
        conn: Conn,
        kept: _Kept,
        decision: Decision,
        agent: Agent | None,
        now: datetime,
    ) -> IntakeResult:
        """An agent's tagged mail: the customers get what the agent added, the ticket all."""
        assert agent is not None
        assert decision.ticket is not None
        assert decision.new_status is not None
        mail, ticket = kept.mail, decision.ticket
        reply = REPLY_TICKET.format(number=ticket.number)
        message = _message_record(
            kept, "agent_reply", decision.reason, ticket=ticket.number, reply=reply
        )
        recorded = record_mail(conn, message, now=now)
        origin = Origin(
            actor=agent.email,
            agent_name=agent.name,
            message=recorded.message,
            raw_sha256=kept.raw_blob[0],
            body_text=mail.body_text,
            attachments=kept.files,
        )
        desk = self._desk()
        outgoing = tuple(OutboundFile(a.filename, a.content_type, a.data) for a in mail.attachments)
        if decision.text.strip() or outgoing:
            result = desk.reply(
                conn, ticket, text=decision.text, files=outgoing, status=decision.new_status,
                origin=origin, now=now,
            )  # fmt: skip
        else:  # only a #status line: a status change, told like one from the CLI
            result = desk.change_status(
                conn, ticket, status=decision.new_status, note="", origin=origin, now=now
            )
        if not result.sent:
            log.warning("agent_reply_unsent", ticket=ticket.number, agent=agent.email,
                        reason="no registered recipient or all suppressed")  # fmt: skip
        return IntakeResult(reply, "agent_reply", ticket.number, len(result.sent))


def _ascii(text: str) -> str:
    """Printable ASCII only: an SMTP reply line may carry nothing else."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)
