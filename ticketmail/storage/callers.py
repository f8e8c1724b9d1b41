"""The people the team calls and who call it (SPEC 9.1): a ticket's requester as the desk
shows them (name, phone, the channel the ticket came by), and a caller not yet registered
made a user of an institution, active without a password, as `user add` makes one.

Plain functions on a `Conn`: the writes run inside `store.write(fn)`, the
reads on the web's read-only connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketmail.storage._people import add_users
from ticketmail.storage.accounts import customer_of
from ticketmail.storage.dialect import Conn
from ticketmail.storage.records import UserRow

__all__ = [
    "CHANNELS",
    "Caller",
    "Requester",
    "add_caller",
    "caller_of",
    "requester_of",
    "set_phone",
]

CHANNELS = ("mail", "web", "phone", "other")  # how a ticket came in


@dataclass(frozen=True, slots=True)
class Requester:
    """A ticket's requester as the desk shows them; name and phone '' when unknown."""

    email: str
    name: str
    phone: str
    channel: str


@dataclass(frozen=True, slots=True)
class Caller:
    """A registered user, as the desk's new-ticket form looks them up."""

    email: str
    customer: str
    phone: str


def requester_of(conn: Conn, number: int) -> Requester | None:
    """Ticket `number`'s requester with their name and phone (while a user), and its channel."""
    row = conn.execute(
        "SELECT t.requester, t.channel, u.name, u.phone FROM tickets t "
        "LEFT JOIN users u ON u.email = t.requester WHERE t.number = ?",
        (number,),
    ).fetchone()
    if row is None:
        return None
    return Requester(row[0], row[2] or "", row[3] or "", row[1])


def caller_of(conn: Conn, email: str) -> Caller | None:
    """The active user of this address, if any (a pending registration is none)."""
    row = conn.execute(
        "SELECT email, customer, phone FROM users WHERE email = ?", (email,)
    ).fetchone()
    return Caller(row[0], row[1], row[2]) if row is not None else None


def add_caller(
    conn: Conn, email: str, *, customer: str, name: str, phone: str, now: datetime
) -> str | None:
    """Make `email` a user of institution `customer`, active without a password (a password
    comes through /password/forgot); None when done, else why not: 'no_customer' (no such
    institution), 'agent' (the address is an agent's)."""
    if customer_of(conn, customer) is None:
        return "no_customer"
    if conn.execute("SELECT 1 FROM agents WHERE email = ?", (email,)).fetchone() is not None:
        return "agent"
    add_users(conn, [UserRow(email, customer, name, None, phone)], now=now)
    return None


def set_phone(conn: Conn, email: str, phone: str) -> None:
    """A user's phone number as the caller gave it in the call."""
    conn.execute("UPDATE users SET phone = ? WHERE email = ?", (phone, email))
