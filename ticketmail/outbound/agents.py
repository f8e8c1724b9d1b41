"""The desk's notifications to agents (SPEC 9, 9.1): a new ticket, a customer's follow-up,
a customer closing or reopening a ticket in the portal, and the end of a ticket's waiting
time go to the ticket's owner, or while it has none to every agent (or `desk.notify_to`); a
ticket assigned to an agent by another goes to that agent; a confirmed registration awaiting
approval goes to every agent (or `desk.notify_to`).

Runs inside the write job that stores the customer's article, so that the notification is
queued in the same transaction. Each mail carries the ticket's tag and a signed Message-ID:
an agent who answers it by mail answers the customer (intake's agent-reply path).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from ticketmail.config import Config
from ticketmail.localtime import local_when
from ticketmail.mail.msgid import MessageIds
from ticketmail.models import User
from ticketmail.outbound.compose import Templates, build_mail, mail_context
from ticketmail.rules import auto_mail_allowed, format_tag
from ticketmail.storage import desk as desk_db
from ticketmail.storage.accounts import Registration, customer_of, enqueue
from ticketmail.storage.dialect import Conn
from ticketmail.storage.records import OutboxRecord

__all__ = [
    "News",
    "assigned",
    "customer_set_status",
    "customer_wrote",
    "notify_agents",
    "registration_waiting",
    "wait_over",
]

log = structlog.get_logger()
EXCERPT = 2000  # characters of the customer's text in a notification


@dataclass(frozen=True, slots=True)
class News:
    """What happened on a ticket that agents hear of."""

    kind: str  # agent_new_ticket, agent_follow_up, agent_customer_closed, ..., agent_assigned
    ticket: int
    subject: str
    status: str
    customer: str  # the institution's number
    customer_name: str
    writer: str  # the customer's address
    writer_name: str
    text: str
    when: datetime | None = None  # a time the text names, as the reading agent writes it


def notify_agents(
    conn: Conn,
    news: News,
    /,
    *,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    actor: str | None = None,
    now: datetime,
) -> int:
    """Queue the notifications of `news`; how many were queued. `actor` (an agent acting
    themselves) is never told of their own action. A ticket's notifications to one agent
    are capped per hour like automatic mail (SPEC 4.3), so a mail storm on one ticket does
    not become a notification storm."""
    since = now - timedelta(hours=1)
    queued = 0
    for agent in desk_db.agents_to_notify(conn, news.ticket, notify_to=config.desk.notify_to):
        if actor is not None and agent.email == actor.casefold():
            continue
        reason = auto_mail_allowed(
            suppressed=False,
            to_address=0,
            for_ticket=desk_db.notifications_about(conn, news.ticket, agent.email, since=since),
            max_per_address=config.policy.max_auto_replies_per_hour,
            max_per_ticket=config.policy.max_auto_replies_per_ticket_per_hour,
        )
        if reason is not None:
            log.info("agent_notice_suppressed", kind=news.kind, reason=reason,
                     recipient=agent.email, ticket=news.ticket)  # fmt: skip
            continue
        record = _notice(news, agent, config=config, templates=templates, ids=ids, now=now)
        entry = enqueue(conn, record, now=now)
        queued += 1
        log.info("agent_notice_queued", kind=news.kind, outbox=entry, recipient=agent.email,
                 ticket=news.ticket)  # fmt: skip
    return queued


def _notice(
    news: News,
    agent: desk_db.DeskAgent,
    *,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
) -> OutboxRecord:
    lang = agent.lang or config.templates.default_language
    tag = format_tag(config.tickets.subject_tag, news.ticket)
    context = mail_context(
        ticket=news.ticket, tag=tag, subject=news.subject, name=agent.name,
        customer=news.customer_name, support_address=config.smtp.recipients[0],
        offer_address=config.policy.offer_address, team=config.mail.from_name,
        reopen_days=config.tickets.reopen_days, status=news.status,
        text=local_when(news.when, lang, config.web.timezone) if news.when else news.text[:EXCERPT],
        agent_name=news.writer_name or news.writer,
        link=config.web.base_url.rstrip("/") + f"/desk/tickets/{news.ticket}",
        customer_number=news.customer,
    )  # fmt: skip
    subject, body = templates.render(news.kind, lang=lang, context=context)
    out = build_mail(
        kind=news.kind, subject=subject, body=body, sender_name=config.mail.from_name,
        sender_address=config.mail.from_address, recipient=agent.email,
        recipient_name=agent.name, message_id=ids.new(news.ticket), in_reply_to=None,
        references=(), auto_submitted="auto-generated", loop_token=config.mail.from_address,
        lang=lang, now=now,
    )  # fmt: skip
    # Not counted as an automatic mail of the ticket's: the customers' acknowledgements keep
    # their own per-ticket budget.
    return OutboxRecord(
        kind=news.kind, ticket=news.ticket, recipient=out.recipient, sender=out.sender,
        message_id=out.message_id, subject=out.subject, raw=out.raw, automatic=False,
    )  # fmt: skip


def customer_wrote(
    conn: Conn,
    *,
    new: bool,
    ticket: int,
    user: User,
    text: str,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
    actor: str | None = None,
) -> int:
    """A customer opened ticket `ticket` (`new`) or wrote on it, by mail or web: tell the
    agents (after the article is stored: the ticket's status is the new one); `actor`: the
    agent who took it for the customer, not told."""
    row = conn.execute("SELECT subject, status FROM tickets WHERE number = ?", (ticket,)).fetchone()
    if row is None:
        return 0
    news = News(
        kind="agent_new_ticket" if new else "agent_follow_up", ticket=ticket, subject=row[0],
        status=row[1], customer=user.customer.number, customer_name=user.customer.name,
        writer=user.email, writer_name=user.name, text=text,
    )  # fmt: skip
    return notify_agents(
        conn, news, config=config, templates=templates, ids=ids, actor=actor, now=now
    )


def customer_set_status(
    conn: Conn,
    *,
    ticket: int,
    user: User,
    status: str,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
) -> int:
    """A customer closed (`status` closed) or reopened ticket `ticket` in the portal: tell
    its owner, else the agents (SPEC 9.1)."""
    found = desk_db.ticket_brief(conn, ticket)
    if found is None:
        return 0
    kind = "agent_customer_closed" if status == "closed" else "agent_customer_reopened"
    news = News(
        kind=kind, ticket=ticket, subject=found.subject, status=found.status,
        customer=found.customer, customer_name=found.customer_name, writer=user.email,
        writer_name=user.name, text="",
    )  # fmt: skip
    return notify_agents(conn, news, config=config, templates=templates, ids=ids, now=now)


def assigned(
    conn: Conn,
    ticket: int,
    /,
    *,
    owner: str,
    by: desk_db.DeskAgent,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
) -> bool:
    """Agent `by` made `owner` the ticket's owner: mail the owner, in the owner's language
    (SPEC 9.1), unless it is `by` themselves or they switched notifications off."""
    agent = desk_db.agent_of(conn, owner)
    found = desk_db.ticket_brief(conn, ticket)
    if agent is None or found is None or agent.email == by.email.casefold():
        return False
    if not agent.notify:
        log.info("agent_notice_suppressed", kind="agent_assigned", reason="notify_off",
                 recipient=agent.email, ticket=ticket)  # fmt: skip
        return False
    news = News(
        kind="agent_assigned", ticket=ticket, subject=found.subject, status=found.status,
        customer=found.customer, customer_name=found.customer_name, writer=by.email,
        writer_name=by.name, text="",
    )  # fmt: skip
    record = _notice(news, agent, config=config, templates=templates, ids=ids, now=now)
    entry = enqueue(conn, record, now=now)
    log.info("agent_notice_queued", kind=news.kind, outbox=entry, recipient=agent.email,
             ticket=ticket, by=by.email)  # fmt: skip
    return True


def wait_over(
    conn: Conn,
    ticket: int,
    /,
    *,
    until: datetime,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
) -> int:
    """Ticket `ticket` waited until `until` (as agents read it) and is open again: remind
    its owner, else the agents (SPEC 9.1); how many were queued."""
    found = desk_db.ticket_brief(conn, ticket)
    if found is None:
        return 0
    news = News(
        kind="agent_wait_over", ticket=ticket, subject=found.subject, status=found.status,
        customer=found.customer, customer_name=found.customer_name, writer="system",
        writer_name="", text="", when=until,
    )  # fmt: skip
    return notify_agents(conn, news, config=config, templates=templates, ids=ids, now=now)


def registration_waiting(
    conn: Conn,
    reg: Registration,
    /,
    *,
    config: Config,
    templates: Templates,
    ids: MessageIds,
    now: datetime,
) -> int:
    """Registration `reg` was just confirmed and awaits an agent's approval: tell every agent
    with notifications on (or `desk.notify_to`), each in their language; how many were
    queued. Called once, by the confirmation that made it pending, never for an unconfirmed
    one, so an anonymous /register alone mails no agent. The mail names only the address and
    the institution as stored, nothing else the visitor typed (not the name)."""
    found = customer_of(conn, reg.customer)
    queued = 0
    for agent in desk_db.team_to_notify(conn, notify_to=config.desk.notify_to):
        lang = agent.lang or config.templates.default_language
        context = mail_context(
            ticket=None, tag="", subject="", name=agent.name,
            customer=found.name if found is not None else "", customer_number=reg.customer,
            support_address=config.smtp.recipients[0], offer_address=config.policy.offer_address,
            team=config.mail.from_name, reopen_days=config.tickets.reopen_days, text=reg.email,
            link=config.web.base_url.rstrip("/") + "/desk/registrations",
        )  # fmt: skip
        subject, body = templates.render("agent_registration", lang=lang, context=context)
        out = build_mail(
            kind="agent_registration", subject=subject, body=body,
            sender_name=config.mail.from_name, sender_address=config.mail.from_address,
            recipient=agent.email, recipient_name=agent.name, message_id=ids.new(None),
            in_reply_to=None, references=(), auto_submitted="auto-generated",
            loop_token=config.mail.from_address, lang=lang, now=now,
        )  # fmt: skip
        record = OutboxRecord(
            kind="agent_registration", ticket=None, recipient=out.recipient, sender=out.sender,
            message_id=out.message_id, subject=out.subject, raw=out.raw, automatic=False,
        )  # fmt: skip
        entry = enqueue(conn, record, now=now)
        queued += 1
        log.info("agent_notice_queued", kind="agent_registration", outbox=entry,
                 recipient=agent.email, registration=reg.id)  # fmt: skip
    return queued
