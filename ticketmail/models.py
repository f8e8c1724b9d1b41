"""The values that cross module borders: customers, users, tickets, queue entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, get_args

__all__ = [
    "CUSTOMER_STATUSES",
    "MERGED",
    "SETTABLE_STATUSES",
    "STATUSES",
    "Agent",
    "ArticleView",
    "AttachmentView",
    "Customer",
    "HeldEntry",
    "OutboxEntry",
    "QuarantineEntry",
    "Status",
    "TicketRef",
    "TicketSummary",
    "TicketView",
    "User",
    "customer_status",
]

# A ticket's status (SPEC section 7); `waiting` until a time and `merged` (SPEC 9.1).
Status = Literal["new", "open", "answered", "closed", "waiting", "merged"]
STATUSES: tuple[Status, ...] = get_args(Status)
# A merge alone makes a ticket 'merged' (SPEC 9.1): no person, mail or form sets it.
MERGED: Status = "merged"
SETTABLE_STATUSES: tuple[Status, ...] = tuple(s for s in STATUSES if s != MERGED)
# The statuses customers see (portal pages and filters, their mails): waiting is open to them.
CUSTOMER_STATUSES: tuple[Status, ...] = ("new", "open", "answered", "closed")


def customer_status(status: str) -> str:
    """A status as customers see it (SPEC 9.1): a waiting ticket is open to them."""
    return "open" if status == "waiting" else status


@dataclass(frozen=True, slots=True)
class Customer:
    number: str
    name: str
    support_until: date | None
    trial_until: date | None

    def has_support(self, today: date) -> bool:
        """An active support contract or trial on `today` (both dates inclusive)."""
        return any(d is not None and d >= today for d in (self.support_until, self.trial_until))


@dataclass(frozen=True, slots=True)
class User:
    email: str
    name: str
    lang: str | None
    customer: Customer
    phone: str = ""  # as written ('' for none), for the team to call (SPEC 9.1)


@dataclass(frozen=True, slots=True)
class Agent:
    """A member of the support team: answers tickets, never opens one by mail."""

    email: str
    name: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TicketRef:
    """What routing needs to know about an existing ticket."""

    number: int
    customer: str
    status: str
    closed_at: datetime | None
    requester: str
    subject: str
    recent_auto_replies: int


@dataclass(frozen=True, slots=True)
class TicketSummary:
    number: int
    subject: str
    status: str
    customer: str
    customer_name: str
    requester: str
    created_at: datetime
    updated_at: datetime
    articles: int
    merged_into: int | None = None  # status 'merged': the ticket that took its articles
    waiting_until: datetime | None = None  # while waiting: when it is open again (SPEC 9.1)


@dataclass(frozen=True, slots=True)
class AttachmentView:
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None


@dataclass(frozen=True, slots=True)
class ArticleView:
    id: int
    direction: str
    automatic: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str
    body_text: str
    reply_text: str
    raw_sha256: str | None
    note: str | None
    flags: tuple[str, ...]
    attachments: tuple[AttachmentView, ...]


@dataclass(frozen=True, slots=True)
class TicketView:
    summary: TicketSummary
    previous_number: int | None
    articles: tuple[ArticleView, ...]
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A change of a ticket's status, owner, merge or waiting time (SPEC 9.1): who, when."""

    at: datetime
    by: str  # an agent's or customer's address, or "system"
    what: str  # status, owner, merge, waiting
    old: str | None
    new: str | None
    version: int  # the ticket's version this change made


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    created_at: datetime
    kind: str
    ticket: int | None
    recipient: str
    sender: str
    message_id: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    received_at: datetime
    envelope_from: str
    envelope_to: tuple[str, ...]
    raw_sha256: str
    size: int
    error: str
    status: str
    outcome: str


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """A mail whose sender could not be verified, kept until an admin decides."""

    id: int
    received_at: datetime
    envelope_from: str
    envelope_to: tuple[str, ...]
    sender: str
    raw_sha256: str
    size: int
    reason: str
    status: str
    outcome: str
