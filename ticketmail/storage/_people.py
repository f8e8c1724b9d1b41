"""Who may write: customers (institutions), their users, and the support team's agents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ticketmail.errors import NotFoundError, RefusedError, UsageError
from ticketmail.models import Agent, Customer, User
from ticketmail.storage._rows import agent_of, day, iso, user_of
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn
from ticketmail.storage.records import CustomerRow, UserRow

__all__ = [
    "People",
    "add_agent",
    "add_customers",
    "add_users",
    "remove_agent",
    "remove_user",
]


# --- in a job, on the writer's connection ------------------------------------------------------


def add_agent(conn: Conn, email: str, name: str, *, now: datetime) -> bool:
    """Add an agent or rename one; True when new. A customer user cannot be an agent."""
    address = email.casefold()
    if conn.execute("SELECT 1 FROM users WHERE email = ?", (address,)).fetchone():
        raise RefusedError(
            f"{address} is registered as a customer user; an agent's address "
            "must not be one (user remove it first)"
        )
    known = conn.execute("SELECT 1 FROM agents WHERE email = ?", (address,)).fetchone()
    conn.execute(
        "INSERT INTO agents(email, name, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT(email) DO UPDATE SET name = excluded.name",
        (address, name, iso(now)),
    )
    return known is None


def remove_agent(conn: Conn, email: str) -> None:
    cur = conn.execute("DELETE FROM agents WHERE email = ?", (email.casefold(),))
    if cur.rowcount == 0:
        raise NotFoundError(f"agent {email} does not exist")


def add_customers(conn: Conn, rows: Sequence[CustomerRow], *, now: datetime) -> None:
    """Insert or update customers (all or none: the job's transaction)."""
    conn.executemany(
        "INSERT INTO customers(number, name, support_until, trial_until, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(number) DO UPDATE SET name = excluded.name, "
        "support_until = excluded.support_until, trial_until = excluded.trial_until",
        [
            (
                r.number,
                r.name,
                r.support_until.isoformat() if r.support_until else None,
                r.trial_until.isoformat() if r.trial_until else None,
                iso(now),
            )
            for r in rows
        ],
    )


def add_users(conn: Conn, rows: Sequence[UserRow], *, now: datetime) -> None:
    """Insert or update users (all or none); every customer must exist, no agent be one."""
    for line, r in enumerate(rows, start=1):
        where = f"row {line}: " if len(rows) > 1 else ""
        if (
            conn.execute("SELECT 1 FROM customers WHERE number = ?", (r.customer,)).fetchone()
            is None
        ):
            raise UsageError(f"{where}customer {r.customer} does not exist")
        if conn.execute("SELECT 1 FROM agents WHERE email = ?", (r.email.casefold(),)).fetchone():
            raise RefusedError(
                f"{where}{r.email.casefold()} is an agent's address, not a customer's"
            )
    conn.executemany(
        "INSERT INTO users(email, customer, name, lang, phone, created_at) "
        "VALUES (:e, :c, :n, :l, coalesce(:p, ''), :at) "
        "ON CONFLICT(email) DO UPDATE SET customer = excluded.customer, "
        "name = excluded.name, lang = excluded.lang, phone = coalesce(:p, users.phone)",
        [
            {
                "e": r.email.casefold(),
                "c": r.customer,
                "n": r.name,
                "l": r.lang,
                "p": r.phone,
                "at": iso(now),
            }
            for r in rows
        ],
    )


def remove_user(conn: Conn, email: str) -> None:
    cur = conn.execute("DELETE FROM users WHERE email = ?", (email.casefold(),))
    if cur.rowcount == 0:
        raise NotFoundError(f"user {email} does not exist")


# --- the Store's part ---------------------------------------------------------------------------


class People:
    """The Store's customers, users and agents: reads, and one job per change."""

    db: Database

    async def get_agent(self, email: str) -> Agent | None:
        row = await self.db.fetchone(
            "SELECT email, name, created_at FROM agents WHERE email = ?", (email.casefold(),)
        )
        return agent_of(row) if row is not None else None

    async def list_agents(self) -> list[Agent]:
        rows = await self.db.fetchall("SELECT email, name, created_at FROM agents ORDER BY email")
        return [agent_of(r) for r in rows]

    async def add_agent(self, email: str, name: str, *, now: datetime) -> bool:
        """Add an agent or rename one; True when new. A customer user cannot be an agent."""
        return await self.db.write(lambda conn: add_agent(conn, email, name, now=now))

    async def remove_agent(self, email: str) -> None:
        await self.db.write(lambda conn: remove_agent(conn, email))

    async def add_customers(self, rows: Sequence[CustomerRow], *, now: datetime) -> None:
        """Insert or update customers, all or none."""
        await self.db.write(lambda conn: add_customers(conn, rows, now=now))

    async def list_customers(self) -> list[tuple[Customer, int]]:
        """Every customer with its number of users."""
        rows = await self.db.fetchall(
            "SELECT c.*, (SELECT COUNT(*) FROM users u WHERE u.customer = c.number) AS users "
            "FROM customers c ORDER BY c.number"
        )
        return [
            (
                Customer(r["number"], r["name"], day(r["support_until"]), day(r["trial_until"])),
                r["users"],
            )
            for r in rows
        ]

    async def add_users(self, rows: Sequence[UserRow], *, now: datetime) -> None:
        """Insert or update users, all or none; every customer must exist."""
        await self.db.write(lambda conn: add_users(conn, rows, now=now))

    async def remove_user(self, email: str) -> None:
        await self.db.write(lambda conn: remove_user(conn, email))

    async def list_users(self, *, customer: str | None = None) -> list[User]:
        sql = (
            "SELECT u.email, u.name, u.lang, u.phone, c.number, c.name AS cname, "
            "c.support_until, c.trial_until FROM users u JOIN customers c ON c.number = u.customer"
        )
        params: tuple[Any, ...] = ()
        if customer is not None:
            sql += " WHERE u.customer = ?"
            params = (customer,)
        rows = await self.db.fetchall(sql + " ORDER BY u.customer, u.email", params)
        return [user_of(r) for r in rows]
