"""The `user` commands: the people of an institution who may write to support."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ticketmail.cli._common import (
    LANGS,
    Verbs,
    check_customer,
    customer_option,
    now_utc,
    parse_email,
    plural,
    print_json,
    print_table,
    read_csv,
    set_password_from_stdin,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import NotFoundError, UsageError
from ticketmail.inputs import parse_phone
from ticketmail.storage import accounts
from ticketmail.storage.store import Store, UserRow


def parse_user_csv(path: Path) -> list[tuple[int, UserRow]]:
    rows: list[tuple[int, UserRow]] = []
    seen: set[str] = set()
    for line, r in read_csv(path, ("email", "customer", "name", "lang"), optional=("phone",)):
        where = f"{path} line {line}"
        try:
            email = parse_email(r["email"])
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if email in seen:
            raise UsageError(f"{where}: {email} appears twice")
        seen.add(email)
        if not r["customer"]:
            raise UsageError(f"{where}: customer is empty")
        lang = r["lang"].lower() or None
        if lang is not None and lang not in LANGS:
            raise UsageError(f"{where}: lang {r['lang']!r} is not de or en")
        try:
            phone = parse_phone(r["phone"])
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        rows.append((line, UserRow(email, r["customer"], r["name"], lang, phone)))
    return rows


def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    row = UserRow(
        parse_email(args.email), args.customer.strip(), (args.name or "").strip(), args.lang,
        parse_phone(args.phone) if args.phone is not None else None,
    )  # fmt: skip

    async def run(store: Store) -> int:
        if row.customer not in {c.number for c, _ in await store.list_customers()}:
            raise NotFoundError(f"customer {row.customer} does not exist")
        await store.add_users([row], now=now_utc())
        print(f"user {row.email} saved")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_list(config: Config, args: argparse.Namespace) -> int:
    customer = customer_option(args.customer)

    async def run(store: Store) -> int:
        await check_customer(store, customer)
        users = await store.list_users(customer=customer)
        if args.json:
            print_json(
                [
                    {
                        "email": u.email,
                        "name": u.name,
                        "lang": u.lang,
                        "customer": u.customer.number,
                        "phone": u.phone,
                    }
                    for u in users
                ]
            )
            return 0
        print_table(
            [(u.email, u.name, u.lang, u.customer.number, u.customer.name, u.phone) for u in users],
            ("EMAIL", "NAME", "LANG", "CUSTOMER", "INSTITUTION", "PHONE"),
        )
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_remove(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        await store.remove_user(args.email.strip())
        print(f"user {args.email.strip().casefold()} removed")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_import(config: Config, args: argparse.Namespace) -> int:
    path = Path(args.file)
    numbered = parse_user_csv(path)

    async def run(store: Store) -> int:
        known = {c.number for c, _ in await store.list_customers()}
        for line, row in numbered:
            if row.customer not in known:
                raise UsageError(f"{path} line {line}: customer {row.customer} does not exist")
        await store.add_users([row for _, row in numbered], now=now_utc())
        print(f"{plural(len(numbered), 'user')} imported")
        return 0

    return asyncio.run(with_store(config, run))


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
    """The portal password, read from stdin (one line), never from the command line."""
    return set_password_from_stdin(
        config, parse_email(args.email), exists=accounts.identity_of, who="user"
    )


def register(verbs: Verbs) -> None:
    user = verbs.group("user", "registered senders")
    p = verbs.add(user, "add", cmd_user_add, "add or update a user")
    p.add_argument("email")
    p.add_argument("--customer", required=True, metavar="NUMBER")
    p.add_argument("--name", default="")
    p.add_argument("--lang", choices=LANGS)
    p.add_argument("--phone", help="a phone number the team may call (empty: none)")
    p = verbs.add(user, "list", cmd_user_list, "list users", listing=True)
    p.add_argument("--customer", metavar="NUMBER")
    p = verbs.add(user, "remove", cmd_user_remove, "remove a user")
    p.add_argument("email")
    p = verbs.add(
        user, "import", cmd_user_import, "import email,customer,name,lang[,phone] (all or none)"
    )
    p.add_argument("file", metavar="FILE.csv")
    p = verbs.add(user, "approve", cmd_user_approve, "approve a pending registration")
    p.add_argument("email")
    p = verbs.add(user, "reject", cmd_user_reject, "reject a pending registration")
    p.add_argument("email")
    p = verbs.add(user, "passwd", cmd_user_passwd, "set a password, read from stdin")
    p.add_argument("email")
