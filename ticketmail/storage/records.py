"""The values that go into and come out of the database, beside the models every package uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from ticketmail.models import Agent, AttachmentView, TicketRef, User

__all__ = [
    "ArticleRecord",
    "CustomerRow",
    "MailFacts",
    "MessageRecord",
    "NewTicket",
    "OutboxDue",
    "OutboxRecord",
    "Recorded",
    "Reference",
    "Sender",
    "Thread",
    "UserRow",
]


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """A customer to add or update (`customer add`, `customer import`)."""

    number: str
    name: str
    support_until: date | None = None
    trial_until: date | None = None


@dataclass(frozen=True, slots=True)
class UserRow:
    """A customer's user to add or update (`user add`, `user import`)."""

    email: str
    customer: str
    name: str = ""
    lang: str | None = None
    phone: str | None = None  # None: a new user has none, an existing one keeps theirs


@dataclass(frozen=True, slots=True)
class ArticleRecord:
    """One mail on a ticket, in or out, as the `articles` table keeps it."""

    direction: str
    automatic: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    body_text: str
    reply_text: str
    raw_sha256: str | None
    attachments: tuple[AttachmentView, ...]
    note: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sender:
    """A mail's sender as the store knows them: user, agent, and automatic mail sent to them."""

    user: User | None
    agent: Agent | None
    recent_auto_replies: int  # automatic mails to the address in the window asked for
    suppressed: bool  # blocked after a permanent bounce


@dataclass(frozen=True, slots=True)
class Thread:
    """The Message-IDs a ticket's mails thread under: its first mail and its latest one."""

    root: str | None
    latest: str | None


@dataclass(frozen=True, slots=True)
class OutboxDue:
    """An outbox entry claimed for delivery, with the mail as it goes out: this node's claim
    (`claimed_by`, `lease_until`), and the node whose lease on it ran out, if one did
    (`taken_from`: this attempt may repeat that node's delivery)."""

    id: int
    queued_at: datetime
    sender: str
    recipient: str
    raw: bytes
    attempts: int
    claimed_by: str
    lease_until: datetime
    taken_from: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A mail to queue in the outbox."""

    kind: str
    ticket: int | None
    recipient: str
    sender: str
    message_id: str
    subject: str
    raw: bytes
    automatic: bool


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record_mail` wrote: the message's row id and its notice's outbox entry."""

    message: int
    outbox: int | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """An accepted mail as the `messages` table keeps it (the raw bytes are a blob)."""

    envelope_from: str
    envelope_to: tuple[str, ...]
    header_from: str
    message_id: str
    raw_sha256: str
    size: int
    outcome: str
    reason: str
    ticket: int | None
    reply: str


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A ticket a mail opens, its number read with the mail's facts in the same job."""

    number: int
    customer: str
    requester: str
    subject: str
    automatic: bool
    previous_number: int | None
    channel: str = "mail"  # how it came: mail, web, phone, other (SPEC 9.1)


@dataclass(frozen=True, slots=True)
class MailFacts:
    """What the database knows about an incoming mail, read in one go."""

    previous: tuple[str, int | None] | None  # (reply, ticket) of the same mail accepted before
    sent_by_us: bool  # ticketmail sent a mail with this Message-ID
    sender: Sender | None
    tagged: tuple[TicketRef, ...]  # the tickets the subject tags, in order
    referenced: tuple[TicketRef, ...]  # the tickets In-Reply-To/References name, in order


# A reference a mail makes, as intake classified it: ("number", n) names ticket n (a genuine
# ID of ours), ("sent", id) counts only if we sent a mail with that ID, ("any", id) names the
# ticket that holds or sent a mail with that ID.
Reference = tuple[str, int | str]
