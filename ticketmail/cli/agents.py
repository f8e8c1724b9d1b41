"""The `agent` commands: the support team."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ticketmail.cli._common import (
    Verbs,
    iso_or_none,
    now_utc,
    parse_email,
    print_json,
    print_table,
    set_password_from_stdin,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import RefusedError, UsageError
from ticketmail.models import (
    Agent,
)
from ticketmail.storage import desk as desk_db
from ticketmail.storage.store import Store


def agent_json(agent: Agent) -> dict[str, Any]:
    return {"email": agent.email, "name": agent.name, "created_at": iso_or_none(agent.created_at)}


def cmd_agent_add(config: Config, args: argparse.Namespace) -> int:
    email = parse_email(args.email)
    name = " ".join(args.name.split())
    if not name:
        raise UsageError("--name must not be empty")
    if email in config.own_addresses:
        raise RefusedError(f"{email} is ticketmail's own address; an agent writes from their own")

    async def run(store: Store) -> int:
        new = await store.add_agent(email, name, now=now_utc())
        if args.lang is not None:
            lang = args.lang
            await store.write(lambda conn: desk_db.set_agent_settings(conn, email, lang=lang))
        print(f"agent {email} {'added' if new else 'renamed'}")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_agent_list(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        agents = await store.list_agents()
        if args.json:
            print_json([agent_json(a) for a in agents])
            return 0
        print_table(
            [(a.email, a.name, iso_or_none(a.created_at)) for a in agents],
            ("EMAIL", "NAME", "ADDED"),
        )
        return 0

    return asyncio.run(with_store(config, run))


def cmd_agent_remove(config: Config, args: argparse.Namespace) -> int:
    email = args.email.strip().casefold()

    async def run(store: Store) -> int:
        await store.remove_agent(email)
        print(f"agent {email} removed")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_agent_passwd(config: Config, args: argparse.Namespace) -> int:
    """The desk's login password, read from stdin (one line), never from the command line."""
    return set_password_from_stdin(
        config, parse_email(args.email), exists=desk_db.agent_of, who="agent"
    )


def register(verbs: Verbs) -> None:
    agent = verbs.group("agent", "the support team")
    p = verbs.add(agent, "add", cmd_agent_add, "add an agent or change their name")
    p.add_argument("email")
    p.add_argument("--name", required=True)
    p.add_argument("--lang", choices=("de", "en"), help="the language of their notifications")
    verbs.add(agent, "list", cmd_agent_list, "list agents", listing=True)
    p = verbs.add(agent, "remove", cmd_agent_remove, "remove an agent")
    p.add_argument("email")
    p = verbs.add(agent, "passwd", cmd_agent_passwd, "set the desk password, read from stdin")
    p.add_argument("email")
