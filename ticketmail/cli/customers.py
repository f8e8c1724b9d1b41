"""The `customer` commands: institutions, their contracts and trials."""

from __future__ import annotations

import argparse
import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from ticketmail.cli._common import (
    Verbs,
    now_utc,
    plural,
    print_json,
    print_table,
    read_csv,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import UsageError
from ticketmail.inputs import parse_day, parse_domains
from ticketmail.models import (
    Customer,
)
from ticketmail.storage import accounts
from ticketmail.storage.dialect import Conn
from ticketmail.storage.store import CustomerRow, Store


async def save_domains(store: Store, customers: list[str], domains: tuple[str, ...]) -> None:
    """Replace the domains of these customers (whose users need no approval, SPEC 8.2)."""

    def write(conn: Conn) -> None:
        for number in customers:
            accounts.set_domains(conn, number, domains)

    await store.write(write)


def customer_json(c: Customer, users: int, today: date) -> dict[str, Any]:
    return {
        "number": c.number,
        "name": c.name,
        "support_until": c.support_until.isoformat() if c.support_until else None,
        "trial_until": c.trial_until.isoformat() if c.trial_until else None,
        "supported": c.has_support(today),
        "users": users,
    }


def parse_customer_csv(path: Path) -> list[CustomerRow]:
    rows: list[CustomerRow] = []
    seen: set[str] = set()
    for line, r in read_csv(path, ("number", "name", "support_until", "trial_until")):
        where = f"{path} line {line}"
        if not r["number"]:
            raise UsageError(f"{where}: number is empty")
        if not r["name"]:
            raise UsageError(f"{where}: name is empty")
        if r["number"] in seen:
            raise UsageError(f"{where}: customer {r['number']} appears twice")
        seen.add(r["number"])
        try:
            support = parse_day(r["support_until"], what="support_until")
            trial = parse_day(r["trial_until"], what="trial_until")
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        rows.append(CustomerRow(r["number"], r["name"], support, trial))
    return rows


def cmd_customer_add(config: Config, args: argparse.Namespace) -> int:
    row = CustomerRow(
        args.number.strip(),
        args.name.strip(),
        parse_day(args.support_until or "", what="--support-until"),
        parse_day(args.trial_until or "", what="--trial-until"),
    )
    if not row.number or not row.name:
        raise UsageError("customer number and name must not be empty")
    domains = parse_domains(args.domains) if args.domains is not None else None

    async def run(store: Store) -> int:
        await store.add_customers([row], now=now_utc())
        if domains is not None:
            await save_domains(store, [row.number], domains)
        print(f"customer {row.number} saved")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_customer_list(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        today = now_utc().date()
        found = await store.list_customers()
        if args.json:
            print_json([customer_json(c, n, today) for c, n in found])
            return 0
        print_table(
            [
                (
                    c.number,
                    c.name,
                    c.support_until,
                    c.trial_until,
                    "yes" if c.has_support(today) else "no",
                    n,
                )
                for c, n in found
            ],
            ("NUMBER", "NAME", "SUPPORT_UNTIL", "TRIAL_UNTIL", "SUPPORTED", "USERS"),
        )
        return 0

    return asyncio.run(with_store(config, run))


def cmd_customer_import(config: Config, args: argparse.Namespace) -> int:
    rows = parse_customer_csv(Path(args.file))
    domains = parse_domains(args.domains) if args.domains is not None else None

    async def run(store: Store) -> int:
        await store.add_customers(rows, now=now_utc())
        if domains is not None:
            await save_domains(store, [r.number for r in rows], domains)
        print(f"{plural(len(rows), 'customer')} imported")
        return 0

    return asyncio.run(with_store(config, run))


_DOMAINS_HELP = "mail domains whose users need no approval (empty: none)"


def register(verbs: Verbs) -> None:
    customer = verbs.group("customer", "institutions")
    p = verbs.add(customer, "add", cmd_customer_add, "add or update a customer")
    p.add_argument("number")
    p.add_argument("name")
    p.add_argument("--support-until", metavar="YYYY-MM-DD")
    p.add_argument("--trial-until", metavar="YYYY-MM-DD")
    p.add_argument("--domains", metavar="D1,D2", help=_DOMAINS_HELP)
    verbs.add(customer, "list", cmd_customer_list, "list customers", listing=True)
    p = verbs.add(
        customer, "import", cmd_customer_import, "import number,name,support_until,trial_until"
    )
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--domains", metavar="D1,D2", help=_DOMAINS_HELP + " (each imported one)")
