"""The portal's commands: institutions' mail domains, pending registrations, passwords."""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import sys

from . import accounts
from .cliutil import now_utc, parse_email, with_store
from .config import Config
from .errors import NotFoundError, UsageError
from .store import Store

__all__ = [
    "cmd_user_approve",
    "cmd_user_passwd",
    "cmd_user_reject",
    "parse_domains",
    "save_domains",
]

_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def parse_domains(text: str) -> tuple[str, ...]:
    """`--domains schule.example,schule-b.example`: mail domains, case-folded; empty: none."""
    found: list[str] = []
    for item in text.split(","):
        domain = item.strip().casefold().removeprefix("@")
        if not domain:
            continue
        if not _DOMAIN.fullmatch(domain):
            raise UsageError(f"--domains: {item.strip()!r} is not a mail domain")
        if domain not in found:
            found.append(domain)
    return tuple(found)


async def save_domains(store: Store, customers: list[str], domains: tuple[str, ...]) -> None:
    """Replace the domains of these customers (whose users need no approval, SPEC 8.2)."""

    def write(conn: sqlite3.Connection) -> None:
        for number in customers:
            accounts.set_domains(conn, number, domains)

    await store.write(write)


def cmd_user_approve(config: Config, args: argparse.Namespace) -> int:
    email = parse_email(args.email)

    async def run(store: Store) -> int:
        now = now_utc()
        reg = await store.write(lambda conn: accounts.approve_registration(conn, email, now=now))
        print(f"user {email} approved for customer {reg.customer}")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_reject(config: Config, args: argparse.Namespace) -> int:
    email = parse_email(args.email)

    async def run(store: Store) -> int:
        now = now_utc()
        await store.write(lambda conn: accounts.reject_registration(conn, email, now=now))
        print(f"registration of {email} rejected")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_passwd(config: Config, args: argparse.Namespace) -> int:
    """The password is read from stdin (one line), never from the command line."""
    from .web.security import hash_password, password_problem

    email = parse_email(args.email)
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    problem = password_problem(password, email)
    if problem == "error.password_short":
        raise UsageError("the password (read from stdin) must have at least 10 characters")
    if problem is not None:
        raise UsageError("the password must not be the mail address")
    digest = hash_password(password)

    async def run(store: Store) -> int:
        now = now_utc()

        def write(conn: sqlite3.Connection) -> None:
            if accounts.identity_of(conn, email) is None:
                raise NotFoundError(f"user {email} does not exist")
            accounts.set_password(conn, email, digest, now=now)
            accounts.end_sessions(conn, email)

        await store.write(write)
        print(f"password of {email} set")
        return 0

    return asyncio.run(with_store(config, run))
