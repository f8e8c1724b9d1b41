"""How values are stored in columns and read back: timestamps, days, and rows into models."""

from __future__ import annotations

from datetime import date, datetime

from ticketmail.models import Agent, Customer, TicketRef, User
from ticketmail.storage.dialect import Row

__all__ = [
    "agent_of",
    "day",
    "iso",
    "iso_precise",
    "moment",
    "ticket_ref_of",
    "user_of",
]


def iso(value: datetime) -> str:
    """Timestamps are stored as ISO 8601 UTC strings, which sort like the instants."""
    return value.isoformat(timespec="seconds")


def iso_precise(value: datetime) -> str:
    """With microseconds, for retry times under a second; sorts right beside `iso` ones."""
    return value.isoformat(timespec="microseconds")


def moment(value: str | None) -> datetime | None:
    """A stored timestamp (or NULL) read back."""
    return datetime.fromisoformat(value) if value else None


def day(value: str | None) -> date | None:
    """A stored day (or NULL) read back."""
    return date.fromisoformat(value) if value else None


def user_of(row: Row) -> User:
    """A user from a row of u.email, u.name, u.lang and c.number, c.name AS cname,
    c.support_until, c.trial_until (users u JOIN customers c), and u.phone where read."""
    customer = Customer(
        row["number"], row["cname"], day(row["support_until"]), day(row["trial_until"])
    )
    phone = row["phone"] if "phone" in row.keys() else ""  # noqa: SIM118 - a Row's `in` reads values
    return User(row["email"], row["name"], row["lang"], customer, phone)


def agent_of(row: Row) -> Agent:
    """An agent from a row of its email, name and created_at."""
    return Agent(row["email"], row["name"], moment(row["created_at"]))


def ticket_ref_of(row: Row | None) -> TicketRef | None:
    """What routing and the support team's actions know of a ticket, from a row of
    `SQL_TICKET_REF` (tickets.py)."""
    if row is None:
        return None
    return TicketRef(
        number=row["number"],
        customer=row["customer"],
        status=row["status"],
        closed_at=moment(row["closed_at"]),
        requester=row["requester"],
        subject=row["subject"],
        recent_auto_replies=row["recent"],
    )
