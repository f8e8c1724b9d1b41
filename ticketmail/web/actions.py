"""What the portal writes, each on the database thread in a transaction of its own: a web
ticket or reply (routed by the rules mail follows, SPEC 4.4), a ticket an agent takes for a
user (SPEC 9.1), a status change, and the mails about accounts. Each function takes the
connection `Store.write` hands it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from ticketmail.config import Config
from ticketmail.intake.admission import route_policy
from ticketmail.intake.route import Action, Classification, Decision, Facts, decide
from ticketmail.mail.msgid import MessageIds
from ticketmail.mail.parse import ParsedMail
from ticketmail.models import MERGED, AttachmentView, Customer, User
from ticketmail.outbound.actions import Desk
from ticketmail.outbound.agents import customer_set_status, customer_wrote
from ticketmail.rules import auto_mail_allowed
from ticketmail.storage import accounts
from ticketmail.storage.dialect import Conn
from ticketmail.storage.mails import mail_facts, next_ticket_number
from ticketmail.storage.records import MailFacts, NewTicket, OutboxRecord
from ticketmail.storage.tickets import thread_of

__all__ = ["Posted", "Taken", "account_mail", "post_article", "set_status"]

log = structlog.get_logger()

_PERSON = Classification(bounce=False, own_loop=False, automatic=False, reasons=())


@dataclass(frozen=True, slots=True)
class Posted:
    """What became of a web ticket or reply: `outcome` is created, appended, reopened,
    new_follow_up (the ticket was closed too long), no_contract, not_found or gone."""

    outcome: str
    ticket: int | None = None
    queued: bool = False


@dataclass(frozen=True, slots=True)
class Taken:
    """A ticket an agent opens for a user in the desk (SPEC 9.1): the agent's address, how
    the user reached the team (`phone`, `other`), and whether the user is sent
    `ticket_created`."""

    agent: str
    channel: str
    confirm: bool


def _as_mail(email: str, subject: str, body: str, message_id: str, now: datetime) -> ParsedMail:
    """A web message in the shape routing reads (it looks at the sender and the facts)."""
    return ParsedMail(
        message_id=message_id, from_addr=email, from_name="", to=(), cc=(), subject=subject,
        date=now, in_reply_to=(), references=(), body_text=body, reply_text=body,
        attachments=(), headers=(), content_type="text/plain", has_delivery_status=False,
        defects=(),
    )  # fmt: skip


def post_article(
    conn: Conn,
    *,
    config: Config,
    desk: Desk,
    ids: MessageIds,
    email: str,
    number: int | None,
    subject: str,
    body: str,
    files: tuple[AttachmentView, ...],
    now: datetime,
    taken: Taken | None = None,
) -> Posted:
    """A new ticket (`number` None) or a reply to ticket `number` of the writer's
    institution, with the same numbering, article and confirmation as a mail.

    `taken`: an agent opens a new ticket for user `email`, written by the agent on the user's
    behalf (an article `in`, which the institution sees in the portal), whatever the
    contract (the agent chose to take it); acknowledged only when asked for, and the other
    agents told."""
    probe = ids.new(None)  # a Message-ID nobody has sent: the duplicate check finds nothing
    facts = mail_facts(
        conn,
        message_id=probe, header_from=email, numbers=(number,) if number is not None else (),
        references=(), since=now - timedelta(hours=1), now=now,
    )  # fmt: skip
    user = facts.sender.user if facts.sender is not None else None
    if user is None:
        return Posted("gone")
    own = user.customer.number
    if number is not None and not any(
        t.number == number and t.customer == own for t in facts.tagged
    ):
        return Posted("not_found")
    tagged = tuple(t for t in facts.tagged if t.customer == own)
    if tagged:
        subject = tagged[0].subject
    sender = facts.sender
    decision = _taken(taken, facts, config) if taken is not None else decide(
        _as_mail(email, subject, body, probe, now),
        Facts(
            now=now, sender=user, tagged=tagged, referenced=(),
            recent_auto_replies_to_sender=sender.recent_auto_replies if sender else 0,
            sender_suppressed=sender.suppressed if sender else False,
        ),
        _PERSON,
        route_policy(config),
    )  # fmt: skip
    if decision.action not in (Action.NEW_TICKET, Action.APPEND):
        return Posted("no_contract")
    new_ticket: NewTicket | None = None
    status: str | None = None
    if decision.action is Action.NEW_TICKET:
        ticket = next_ticket_number(conn, first_number=config.tickets.first_number)
        new_ticket = NewTicket(
            ticket, customer=own, requester=user.email, subject=subject, automatic=False,
            previous_number=decision.previous_ticket,
            channel=taken.channel if taken is not None else "web",
        )  # fmt: skip
        outcome = "created" if decision.previous_ticket is None else "new_follow_up"
    else:
        assert decision.ticket is not None
        ticket = decision.ticket.number
        status = decision.new_status
        outcome = "reopened" if decision.reason == "reopened" else "appended"
    message_id = ids.new(ticket)
    note = None
    if decision.previous_ticket is not None:
        note = f"Follow-up to closed ticket {decision.previous_ticket}"
    article = accounts.web_article(
        sender=taken.agent if taken is not None else user.email,
        to=(config.smtp.recipients[0],), subject=subject, body=body, message_id=message_id,
        attachments=files, note=note, now=now, taken=taken is not None,
    )  # fmt: skip
    notice: OutboxRecord | None = None
    if decision.notice is not None:
        root = message_id if new_ticket is not None else thread_of(conn, ticket).root
        notice = desk.acknowledgement(
            decision.notice, user=user, ticket=ticket, subject=subject, answering=message_id,
            root=root or message_id, previous=decision.previous_ticket, now=now,
        )  # fmt: skip
    entry = accounts.open_web_ticket(
        conn, new_ticket, number=ticket, status=status, article=article, notice=notice, now=now
    )
    told = customer_wrote(
        conn, new=new_ticket is not None, ticket=ticket, user=user, text=body, config=config,
        templates=desk.templates, ids=ids, now=now,
        actor=taken.agent if taken is not None else None,
    )  # fmt: skip
    log.info("web_article_stored", outcome=outcome, ticket=ticket, sender=user.email,
             attachments=len(files), previous=decision.previous_ticket,
             taken_by=taken.agent if taken is not None else None)  # fmt: skip
    if notice is not None and entry is not None:
        desk.queued(notice, entry, user)
    elif decision.suppressed is not None:
        log.info("notice_suppressed", reason=decision.suppressed, recipient=user.email,
                 ticket=ticket)  # fmt: skip
    return Posted(outcome, ticket, entry is not None or told > 0)


def _taken(taken: Taken, facts: MailFacts, config: Config) -> Decision:
    """An agent takes a ticket for a user: a new one, under any contract; its confirmation
    asked for goes out within the limits of automatic mail (a bounced address gets none)."""
    if not taken.confirm:
        return Decision(Action.NEW_TICKET, "taken")
    sender = facts.sender
    suppressed = auto_mail_allowed(
        suppressed=sender.suppressed if sender else False,
        to_address=sender.recent_auto_replies if sender else 0, for_ticket=None,
        max_per_address=config.policy.max_auto_replies_per_hour,
        max_per_ticket=config.policy.max_auto_replies_per_ticket_per_hour,
    )  # fmt: skip
    notice = "ticket_created" if suppressed is None else None
    return Decision(Action.NEW_TICKET, "taken", notice=notice, suppressed=suppressed)


def set_status(
    conn: Conn,
    *,
    config: Config,
    desk: Desk,
    ids: MessageIds,
    user: User,
    number: int,
    status: str,
    now: datetime,
) -> str:
    """A customer closes or reopens a ticket of the institution: 'done', 'unchanged',
    'too_late' (closed longer than tickets.reopen_days: a reply opens a new one),
    'merged' (read-only) or 'not_found'. Kept as an automatic article and in the ticket's
    history (seen by the support team, not mailed to customers); its owner, else the
    agents, are told."""
    email, customer = user.email, user.customer.number
    ref = accounts.ticket_ref(conn, number, since=now)
    if ref is None or ref.customer != customer:
        return "not_found"
    if ref.status == MERGED:  # read-only (SPEC 9.1)
        return "merged"
    if status == "closed" and ref.status == "closed":
        return "unchanged"
    if status == "open":
        if ref.status != "closed":
            return "unchanged"
        window = timedelta(days=config.tickets.reopen_days)
        if ref.closed_at is not None and now >= ref.closed_at + window:
            return "too_late"
    article = accounts.web_article(
        sender=email, to=(), subject=ref.subject, body="", message_id="", attachments=(),
        note=f"status {ref.status} → {status} (by {email} in the portal)", now=now,
        automatic=True,
    )  # fmt: skip
    accounts.set_ticket_status(conn, number, status, article=article, now=now)
    customer_set_status(
        conn, ticket=number, user=user, status=status, config=config,
        templates=desk.templates, ids=ids, now=now,
    )  # fmt: skip
    log.info("web_status_changed", ticket=number, by=email, status=status, old_status=ref.status)
    return "done"


def account_mail(
    conn: Conn,
    kind: str,
    /,
    *,
    config: Config,
    desk: Desk,
    email: str,
    name: str,
    lang: str,
    customer: str,
    link: str,
    now: datetime,
    send: bool = True,
) -> bool:
    """Queue a mail about an account (rate-limited like every automatic mail); True when
    queued. With `send` false the mail is composed and not queued (the same work, for a
    page that must take the same time whether or not it mails)."""
    blocked, recent = accounts.auto_mail_state(conn, email, since=now - timedelta(hours=1), now=now)
    reason = auto_mail_allowed(
        suppressed=blocked, to_address=recent, for_ticket=None,
        max_per_address=config.policy.max_auto_replies_per_hour, max_per_ticket=0,
    )  # fmt: skip
    user = User(email, name, lang, Customer(customer, "", None, None))
    record = desk.account_mail(kind, user=user, link=link, now=now)
    if not send:
        return False
    if reason is not None:
        log.info("notice_suppressed", kind=kind, reason=reason, recipient=email)
        return False
    entry = accounts.enqueue(conn, record, now=now)
    log.info("notice_queued", kind=kind, outbox=entry, recipient=email, lang=lang)
    return True
