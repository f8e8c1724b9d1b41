"""One inbound mail, start to finish: parse, decide, store durably, queue the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from .authres import verify_sender
from .bounce import read_bounce
from .config import Config
from .files import BlobStore
from .models import AttachmentView, User
from .notify import Templates, build_mail, new_message_id
from .parse import ParsedMail, parse_mail
from .replies import (
    REPLY_ACCEPTED,
    REPLY_HELD,
    REPLY_NO_CONTRACT,
    REPLY_NO_SENDER,
    REPLY_NOT_REGISTERED,
    REPLY_TICKET,
    REPLY_UNVERIFIED,
)
from .route import (
    Action,
    Decision,
    Facts,
    RoutePolicy,
    classify,
    clean_subject,
    decide,
    find_ticket_numbers,
    format_tag,
)
from .store import ArticleRecord, OutboxRecord, Store, Transaction

__all__ = ["Envelope", "Intake", "IntakeResult", "route_policy"]

log = structlog.get_logger()

THREAD_PARSE_BYTES = 256 * 1024
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
class Envelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    reply: str
    outcome: str
    ticket: int | None = None
    queued: int = 0


def route_policy(config: Config) -> RoutePolicy:
    return RoutePolicy(
        own_addresses=config.own_addresses,
        loop_token=config.mail.from_address.casefold(),
        subject_tag=config.tickets.subject_tag,
        reopen_days=config.tickets.reopen_days,
        acknowledge_followups=config.tickets.acknowledge_followups,
        unknown_sender=config.policy.unknown_sender,
        no_contract=config.policy.no_contract,
        max_auto_replies_per_hour=config.policy.max_auto_replies_per_hour,
        max_auto_replies_per_ticket_per_hour=config.policy.max_auto_replies_per_ticket_per_hour,
    )


class Intake:
    """Turns raw mail into tickets. `process` never raises except when nothing could be kept."""

    def __init__(
        self,
        config: Config,
        store: Store,
        blobs: BlobStore,
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
        self.on_queued = on_queued

    async def process(self, raw: bytes, envelope: Envelope) -> IntakeResult:
        """Decide and store; on an unexpected error keep the mail in the quarantine.

        Raises only when even the quarantine could not be written; the caller answers 451.
        """
        try:
            result = await self.handle(raw, envelope)
        except Exception as exc:
            log.error("intake_failed", error=f"{type(exc).__name__}: {exc}", size=len(raw))
            entry = await self.quarantine(raw, envelope, error=f"{type(exc).__name__}: {exc}")
            return IntakeResult(REPLY_HELD.format(entry=entry), "quarantined")
        if result.queued and self.on_queued is not None:
            self.on_queued()
        return result

    async def quarantine(self, raw: bytes, envelope: Envelope, *, error: str) -> int:
        blob = await asyncio.to_thread(self.blobs.put, raw)
        async with self.store.transaction() as tx:
            entry = await tx.add_quarantine(
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
        if len(raw) > THREAD_PARSE_BYTES:
            mail = await asyncio.to_thread(parse_mail, raw)
        else:
            mail = parse_mail(raw)
        sender = mail.from_addr
        silent = self._is_silent(mail, envelope)
        if self.config.policy.sender_auth == "authres" and not (silent or sender_vouched):
            verdict = verify_sender(mail, authserv_id=self.config.smtp.authserv_id)
            if not verdict.trusted:
                return await self._unverified(raw, mail, envelope, verdict.reason)
        # Refuse unregistered senders before anything touches the disk.
        if self.config.policy.unknown_sender == "reject":
            known = await self.store.get_user(sender) if sender else None
            if known is None and not silent:
                return self._rejected(mail, "unknown_sender", None)

        raw_blob, files = await asyncio.to_thread(self._store_blobs, raw, mail)
        now = self.clock()
        async with self.store.transaction() as tx:
            previous = await tx.find_message(mail.message_id, sender)
            if previous is not None:
                log.info("mail_duplicate", message_id=mail.message_id, sender=sender)
                return IntakeResult(previous[0], "duplicate", previous[1])
            facts = await self._facts(tx, mail, now)
            cls = classify(
                mail,
                envelope_from=envelope.mail_from,
                policy=self.policy,
                own_message_id=await tx.is_own_message_id(mail.message_id),
            )
            decision = decide(mail, facts, cls, self.policy)
            if decision.action is Action.REJECT:
                return self._rejected(mail, decision.reason, facts.sender)
            if decision.reason == "bounce":
                await self._record_bounce(tx, raw, mail, now)
            result = await self._apply(
                tx, mail, envelope, decision, facts, (raw_blob, len(raw)), files, now
            )
        log.info(
            "mail_accepted",
            outcome=result.outcome,
            reason=decision.reason,
            ticket=result.ticket,
            sender=sender,
            message_id=mail.message_id,
            automatic=decision.automatic,
            signals=list(decision.signals),
            notice=decision.notice,
            suppressed=decision.suppressed,
            attachments=len(files),
            size=len(raw),
        )
        return result

    async def _unverified(
        self, raw: bytes, mail: ParsedMail, envelope: Envelope, reason: str
    ) -> IntakeResult:
        """policy.unverified: refuse, or keep the mail held until an admin decides."""
        if self.config.policy.unverified == "reject":
            log.info("mail_rejected", reason="unverified_sender", detail=reason,
                     sender=mail.from_addr, message_id=mail.message_id)  # fmt: skip
            return IntakeResult(REPLY_UNVERIFIED.format(address=mail.from_addr), "rejected")
        blob = await asyncio.to_thread(self.blobs.put, raw)
        async with self.store.transaction() as tx:
            entry = await tx.add_held(
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

    def _is_silent(self, mail: ParsedMail, envelope: Envelope) -> bool:
        """Bounces and loops are accepted silently even from unknown senders."""
        cls = classify(
            mail, envelope_from=envelope.mail_from, policy=self.policy, own_message_id=False
        )
        return cls.bounce or cls.own_loop

    def _rejected(self, mail: ParsedMail, reason: str, user: User | None) -> IntakeResult:
        url = self.config.policy.registration_url
        if reason == "no_contract":
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

    def _store_blobs(self, raw: bytes, mail: ParsedMail) -> tuple[str, tuple[AttachmentView, ...]]:
        raw_blob, *blobs = self.blobs.put_all([raw, *(a.data for a in mail.attachments)])
        files = tuple(
            AttachmentView(att.filename, att.content_type, blob.size, blob.sha256, att.content_id)
            for att, blob in zip(mail.attachments, blobs, strict=True)
        )
        return raw_blob.sha256, files

    async def _facts(self, tx: Transaction, mail: ParsedMail, now: datetime) -> Facts:
        since = now - timedelta(hours=1)
        user = await tx.get_user(mail.from_addr) if mail.from_addr else None
        numbers = find_ticket_numbers(mail.subject, self.config.tickets.subject_tag)
        ids = [*mail.in_reply_to, *reversed(mail.references)][:20]
        return Facts(
            now=now,
            sender=user,
            tagged=tuple(await tx.tickets_by_number(numbers[:10], since=since)),
            referenced=tuple(await tx.tickets_by_message_id(ids, since=since)),
            recent_auto_replies_to_sender=(
                await tx.auto_replies_to(mail.from_addr, since=since) if mail.from_addr else 0
            ),
            sender_suppressed=(
                await tx.is_suppressed(mail.from_addr, now=now) if mail.from_addr else False
            ),
        )

    async def _record_bounce(
        self, tx: Transaction, raw: bytes, mail: ParsedMail, now: datetime
    ) -> None:
        """Mark the outbox entries a bounce names; block the address after a permanent one."""
        report = read_bounce(raw, mail)
        if report.delayed:  # a delay warning: the relay is still trying
            log.info("bounce_delay_notice", status=report.status, named=len(report.message_ids))
            return
        bounced = await tx.mark_bounced(report.message_ids, reason=report.reason)
        block = timedelta(days=self.config.policy.bounce_block_days)
        blocked: list[str] = []
        if report.permanent and block:
            for _, recipient in bounced:
                await tx.suppress(recipient, until=now + block, reason=report.reason, now=now)
                blocked.append(recipient)
        log.info("bounce_recorded", status=report.status, permanent=report.permanent,
                 outbox=[entry for entry, _ in bounced], blocked=blocked,
                 named=len(report.message_ids))  # fmt: skip

    async def _apply(
        self,
        tx: Transaction,
        mail: ParsedMail,
        envelope: Envelope,
        decision: Decision,
        facts: Facts,
        raw_blob: tuple[str, int],
        files: tuple[AttachmentView, ...],
        now: datetime,
    ) -> IntakeResult:
        raw_sha256, size = raw_blob
        ticket: int | None = None
        subject = _ticket_subject(clean_subject(mail.subject, self.config.tickets.subject_tag))
        user = facts.sender
        outcome = {
            Action.DISCARD: "discarded",
            Action.NO_CONTRACT: "no_contract",
            Action.NEW_TICKET: "ticket_created",
            Action.APPEND: "ticket_updated",
        }[decision.action]
        if decision.action is Action.NEW_TICKET:
            assert user is not None
            ticket = await tx.next_ticket_number(self.config.tickets.first_number)
            await tx.create_ticket(
                ticket,
                customer=user.customer.number,
                requester=user.email,
                subject=subject,
                automatic=decision.automatic,
                previous_number=decision.previous_ticket,
                now=now,
            )
        elif decision.action is Action.APPEND:
            assert decision.ticket is not None
            ticket = decision.ticket.number
            subject = decision.ticket.subject
            await tx.touch_ticket(ticket, status=decision.new_status, now=now)

        reply = REPLY_TICKET.format(number=ticket) if ticket is not None else REPLY_ACCEPTED
        message = await tx.add_message(
            envelope_from=envelope.mail_from,
            envelope_to=envelope.rcpt_tos,
            header_from=mail.from_addr,
            message_id=mail.message_id,
            raw_sha256=raw_sha256,
            size=size,
            outcome=outcome,
            reason=decision.reason,
            ticket=ticket,
            reply=reply,
            now=now,
        )
        if ticket is not None:
            note = None
            if decision.previous_ticket is not None:
                note = f"Follow-up to closed ticket {decision.previous_ticket}"
            await tx.add_article(
                ticket,
                ArticleRecord(
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
                    attachments=files,
                    note=note,
                    flags=mail.defects,
                ),
                message=message,
                now=now,
            )
        queued = 0
        if decision.notice is not None and user is not None:
            await self._queue_notice(tx, decision.notice, mail, user, ticket, subject, now)
            queued = 1
        elif decision.suppressed is not None:
            log.info(
                "notice_suppressed",
                reason=decision.suppressed,
                recipient=mail.from_addr,
                ticket=ticket,
            )
        return IntakeResult(reply, outcome, ticket, queued)

    async def _queue_notice(
        self,
        tx: Transaction,
        name: str,
        mail: ParsedMail,
        user: User,
        ticket: int | None,
        subject: str,
        now: datetime,
    ) -> None:
        cfg = self.config
        lang = user.lang or cfg.templates.default_language
        tag = format_tag(cfg.tickets.subject_tag, ticket) if ticket is not None else ""
        rendered_subject, body = self.templates.render(
            name,
            lang=lang,
            context={
                "ticket": ticket,
                "tag": tag,
                "subject": subject,
                "name": user.name,
                "customer": user.customer.name,
                "support_address": cfg.smtp.recipients[0],
                "offer_address": cfg.policy.offer_address,
            },
        )
        references = (*mail.references[-9:], mail.message_id)
        out = build_mail(
            kind=name,
            subject=rendered_subject,
            body=body,
            sender_name=cfg.mail.from_name,
            sender_address=cfg.mail.from_address,
            recipient=user.email,
            recipient_name=user.name,
            message_id=new_message_id(cfg.mail.message_id_domain),
            in_reply_to=mail.message_id,
            references=references,
            auto_submitted="auto-replied",
            loop_token=cfg.mail.from_address,
            lang=lang,
            now=now,
        )
        entry = await tx.enqueue(
            OutboxRecord(
                kind=name,
                ticket=ticket,
                recipient=out.recipient,
                sender=out.sender,
                message_id=out.message_id,
                subject=out.subject,
                raw=out.raw,
                automatic=True,
            ),
            now=now,
        )
        log.info(
            "notice_queued", kind=name, outbox=entry, recipient=user.email, ticket=ticket, lang=lang
        )
