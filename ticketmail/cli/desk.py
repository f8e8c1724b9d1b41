"""The support team's commands: agents, a ticket's status, and replies from the command line."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from ticketmail.cli._common import (
    iso_or_none,
    now_utc,
    parse_email,
    parse_number,
    print_json,
    print_table,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import NotFoundError, RefusedError, UsageError
from ticketmail.mail.parse import safe_filename
from ticketmail.models import Agent, AttachmentView
from ticketmail.outbound.actions import Desk, DeskResult, Origin, message_ids
from ticketmail.outbound.compose import OutboundFile, Templates
from ticketmail.storage.blobs import BlobStore
from ticketmail.storage.store import Store
from ticketmail.storage.tickets import ticket_ref

__all__ = [
    "agent_json",
    "cmd_agent_add",
    "cmd_agent_list",
    "cmd_agent_remove",
    "cmd_ticket_reply",
    "cmd_ticket_status",
]

RECENT = timedelta(hours=1)  # the window the rate limits count in


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


async def _desk(config: Config, store: Store) -> Desk:
    return Desk(config, Templates(config.templates_dir), await message_ids(config, store))


def _report(result: DeskResult, kind: str) -> None:
    change = (
        f"{result.old_status} → {result.status}"
        if result.old_status != result.status
        else f"stays {result.status}"
    )
    print(f"ticket {result.ticket}: status {change}")
    for sent in result.sent:
        print(f"{kind} queued for {sent.recipient} ({sent.lang})")
    for recipient, reason in result.suppressed:
        print(f"{kind} not sent to {recipient}: {reason}")
    if not result.sent and not result.suppressed:
        print(f"{kind} sent to nobody: no registered user of the institution on this ticket")


def cmd_ticket_status(config: Config, args: argparse.Namespace) -> int:
    """Set a ticket's status; its participants are told (`status_changed`), note included."""
    number = parse_number(args.number, what="ticket number")
    note = (args.note or "").replace("\r\n", "\n").strip()

    async def run(store: Store) -> int:
        desk = await _desk(config, store)
        now = now_utc()

        def change(conn: sqlite3.Connection) -> DeskResult | None:
            ticket = ticket_ref(conn, number, since=now - RECENT)
            if ticket is None:
                raise NotFoundError(f"ticket {number} does not exist")
            if ticket.status == args.status:
                return None
            origin = Origin(actor=config.mail.from_address)
            return desk.change_status(
                conn, ticket, status=args.status, note=note, origin=origin, now=now
            )

        result = await store.write(change)
        if result is None:
            print(f"ticket {number} is already {args.status}: nothing changed, nothing sent")
            return 0
        _report(result, "status_changed")
        return 0

    return asyncio.run(with_store(config, run))


def _reply_text(args: argparse.Namespace) -> str:
    if (args.file is None) == (args.stdin is None):
        raise UsageError("ticket reply takes its text from --file F or from - (standard input)")
    if args.stdin is not None:
        text = sys.stdin.read()
        where = "standard input"
    else:
        path = Path(args.file)
        where = str(path)
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"--file {path}: file not found") from None
        except UnicodeDecodeError:
            raise UsageError(f"--file {path}: not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"--file {path}: cannot read: {exc.strerror}") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if not text.strip():
        raise UsageError(f"the reply text from {where} is empty")
    return text + "\n"


def _attachment(name: str) -> OutboundFile:
    path = Path(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--attach {path}: file not found") from None
    except OSError as exc:
        raise UsageError(f"--attach {path}: cannot read: {exc.strerror}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return OutboundFile(safe_filename(path.name, fallback="attachment"), content_type, data)


def cmd_ticket_reply(config: Config, args: argparse.Namespace) -> int:
    """An agent's answer from the command line: stored on the ticket, mailed to its people."""
    number = parse_number(args.number, what="ticket number")
    agent_address = parse_email(args.agent, what="--agent")
    text = _reply_text(args)
    files = tuple(_attachment(name) for name in args.attach or ())

    async def run(store: Store) -> int:
        agent = await store.get_agent(agent_address)
        if agent is None:
            raise NotFoundError(f"agent {agent_address} is not registered (ticketmail agent add)")
        desk = await _desk(config, store)
        blobs = BlobStore(config.paths.blobs)
        stored = await asyncio.to_thread(blobs.put_all, [f.data for f in files])
        views = tuple(
            AttachmentView(f.filename, f.content_type, blob.size, blob.sha256, None)
            for f, blob in zip(files, stored, strict=True)
        )
        now = now_utc()

        def reply(conn: sqlite3.Connection) -> DeskResult:
            ticket = ticket_ref(conn, number, since=now - RECENT)
            if ticket is None:
                raise NotFoundError(f"ticket {number} does not exist")
            origin = Origin(actor=agent.email, agent_name=agent.name, attachments=views)
            result = desk.reply(
                conn, ticket, text=text, files=files, status=args.status, origin=origin, now=now
            )
            if not result.sent:  # raising here rolls the whole reply back
                raise RefusedError(
                    f"ticket {number}: nobody to send the reply to "
                    f"({ticket.requester} is no longer a registered user of the institution)"
                )
            return result

        result = await store.write(reply)
        _report(result, "agent_reply")
        return 0

    return asyncio.run(with_store(config, run))
