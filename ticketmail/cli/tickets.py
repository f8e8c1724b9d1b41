"""The `ticket` commands: list, show, and the support team's status changes, replies and
merges."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import mimetypes
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from ticketmail.cli._common import (
    Verbs,
    check_customer,
    customer_option,
    iso_or_none,
    now_utc,
    parse_day,
    parse_email,
    parse_number,
    plural,
    print_json,
    print_table,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import NotFoundError, RefusedError, UsageError
from ticketmail.mail.parse import safe_filename
from ticketmail.models import (
    SETTABLE_STATUSES,
    STATUSES,
    AttachmentView,
    TicketSummary,
    TicketView,
)
from ticketmail.outbound.actions import Desk, DeskResult, Origin, message_ids
from ticketmail.outbound.compose import OutboundFile, Templates
from ticketmail.storage.blobs import open_blobs
from ticketmail.storage.dialect import Conn
from ticketmail.storage.merge import merge_ticket, refuse_merged
from ticketmail.storage.store import Store
from ticketmail.storage.tickets import ticket_ref

RECENT = timedelta(hours=1)  # the window the rate limits count in


def ticket_json(view: TicketView) -> dict[str, Any]:
    s = view.summary
    return {
        "number": str(s.number),
        "subject": s.subject,
        "status": s.status,
        "customer": {"number": s.customer, "name": s.customer_name},
        "requester": s.requester,
        "created_at": iso_or_none(s.created_at),
        "updated_at": iso_or_none(s.updated_at),
        "waiting_until": iso_or_none(s.waiting_until),  # while waiting (SPEC 9.1), else null
        "previous_ticket": str(view.previous_number) if view.previous_number else None,
        "merged_into": str(s.merged_into) if s.merged_into is not None else None,
        "articles": [
            {
                "id": a.id,
                "direction": a.direction,
                "automatic": a.automatic,
                "from": a.sender,
                "to": list(a.to),
                "cc": list(a.cc),
                "subject": a.subject,
                "date": iso_or_none(a.date),
                "message_id": a.message_id,
                "body_text": a.body_text,
                "reply_text": a.reply_text,
                "note": a.note,
                "parse_flags": list(a.flags),
                "raw_sha256": a.raw_sha256,
                "attachments": [dataclasses.asdict(f) for f in a.attachments],
            }
            for a in view.articles
        ],
        "history": [
            {"at": iso_or_none(h.at), "by": h.by, "what": h.what, "from": h.old, "to": h.new}
            for h in view.history
        ],
    }


def ticket_summary_json(s: TicketSummary) -> dict[str, Any]:
    return {
        "number": str(s.number),
        "subject": s.subject,
        "status": s.status,
        "customer": s.customer,
        "requester": s.requester,
        "created_at": iso_or_none(s.created_at),
        "updated_at": iso_or_none(s.updated_at),
        "articles": s.articles,
    }


def cmd_ticket_list(config: Config, args: argparse.Namespace) -> int:
    """Newest first; --since keeps the tickets with activity on or after that day (UTC)."""
    since = parse_day(args.since, what="--since") if args.since is not None else None
    if args.since is not None and since is None:
        raise UsageError("--since: a date is needed (YYYY-MM-DD)")
    customer = customer_option(args.customer)

    async def run(store: Store) -> int:
        await check_customer(store, customer)
        tickets = await store.list_tickets(
            customer=customer, status=args.status, active_since=since
        )
        if args.json:
            print_json([ticket_summary_json(t) for t in tickets])
            return 0
        print_table(
            [
                (
                    t.number,
                    t.status,
                    t.customer,
                    t.customer_name[:30],
                    t.requester,
                    t.articles,
                    iso_or_none(t.updated_at),
                    t.subject[:50],
                )
                for t in tickets
            ],
            ("NUMBER", "STATUS", "CUSTOMER", "INSTITUTION", "REQUESTER", "ARTICLES",
             "LAST_ACTIVITY", "SUBJECT"),
        )  # fmt: skip
        return 0

    return asyncio.run(with_store(config, run))


def cmd_ticket_show(config: Config, args: argparse.Namespace) -> int:
    number = parse_number(args.number, what="ticket number")

    async def run(store: Store) -> int:
        view = await store.get_ticket(number)
        if args.json:
            print_json(ticket_json(view))
            return 0
        s = view.summary
        print(f"Ticket {s.number}: {s.subject}")
        until = f" until {iso_or_none(s.waiting_until)}" if s.waiting_until else ""
        print(f"Status:    {s.status}{until}")
        print(f"Customer:  {s.customer} {s.customer_name}")
        print(f"Requester: {s.requester}")
        print(f"Created:   {iso_or_none(s.created_at)}   Updated: {iso_or_none(s.updated_at)}")
        if view.previous_number:
            print(f"Follows:   closed ticket {view.previous_number}")
        if s.merged_into is not None:
            print(f"Merged:    into ticket {s.merged_into} (read-only; its articles are there)")
        for position, a in enumerate(view.articles, start=1):  # its id is in --json
            flag = " (automatic)" if a.automatic else ""
            when = iso_or_none(a.date) or "no date"
            print(f"\n--- article {position} of {len(view.articles)}, {a.direction}{flag}, {when}")
            print(f"From:    {a.sender}")
            if a.direction == "out":
                print(f"To:      {', '.join(a.to) or '(nobody)'}")
            print(f"Subject: {a.subject}")
            if a.note:
                print(f"Note:    {a.note}")
            for f in a.attachments:
                print(f"File:    {f.filename} ({f.content_type}, {f.size} bytes)")
            print()
            print(a.body_text.rstrip() or "(no text)")
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

        def change(conn: Conn) -> DeskResult:
            ticket = ticket_ref(conn, number, since=now - RECENT)
            if ticket is None:
                raise NotFoundError(f"ticket {number} does not exist")
            refuse_merged(conn, number)
            origin = Origin(actor=config.mail.from_address)
            return desk.change_status(
                conn, ticket, status=args.status, note=note, origin=origin, now=now
            )

        result = await store.write(change)
        if result.article == 0:  # the status it has, without a note (SPEC 9.1)
            print(f"ticket {number} is already {args.status}: nothing changed, nothing sent")
            return 0
        _report(result, "status_changed" if result.old_status != result.status else "agent_reply")
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
        blobs = open_blobs(config.paths.blobs, config.database)
        try:
            stored = await asyncio.to_thread(blobs.put_all, [f.data for f in files])
        finally:
            blobs.close()
        views = tuple(
            AttachmentView(f.filename, f.content_type, blob.size, blob.sha256, None)
            for f, blob in zip(files, stored, strict=True)
        )
        now = now_utc()

        def reply(conn: Conn) -> DeskResult:
            ticket = ticket_ref(conn, number, since=now - RECENT)
            if ticket is None:
                raise NotFoundError(f"ticket {number} does not exist")
            refuse_merged(conn, number)
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


def cmd_ticket_merge(config: Config, args: argparse.Namespace) -> int:
    """Merge a ticket into another of its institution, as the desk's merge (SPEC 9.1):
    nobody is mailed."""
    number = parse_number(args.number, what="ticket number")
    into = parse_number(args.into, what="ticket number")
    agent_address = parse_email(args.agent, what="--agent")

    async def run(store: Store) -> int:
        agent = await store.get_agent(agent_address)
        if agent is None:
            raise NotFoundError(f"agent {agent_address} is not registered (ticketmail agent add)")
        now = now_utc()
        merged = await store.write(
            lambda conn: merge_ticket(conn, number, into, by=agent.email, now=now)
        )
        print(
            f"ticket {merged.source} merged into ticket {merged.into}: "
            f"{plural(merged.articles, 'article')} and {plural(merged.files, 'file')} moved; "
            "nobody was mailed"
        )
        return 0

    return asyncio.run(with_store(config, run))


def register(verbs: Verbs) -> None:
    ticket = verbs.group("ticket", "tickets")
    p = verbs.add(ticket, "list", cmd_ticket_list, "list tickets, newest first", listing=True)
    p.add_argument("--customer", metavar="NUMBER")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--since", metavar="YYYY-MM-DD", help="with activity on or after that day")
    p = verbs.add(
        ticket, "show", cmd_ticket_show, "show one ticket with its articles", listing=True
    )
    p.add_argument("number")
    p = verbs.add(ticket, "status", cmd_ticket_status, "set the status, tell the customers")
    p.add_argument("number")
    # never merged (a merge alone sets it); waiting needs a time: set in the desk (SPEC 9.1)
    p.add_argument("status", choices=[s for s in SETTABLE_STATUSES if s != "waiting"])
    p.add_argument("--note", metavar="TEXT", help="included in the mail to the customers")
    p = verbs.add(ticket, "reply", cmd_ticket_reply, "answer a ticket as an agent")
    p.add_argument("number")
    p.add_argument("stdin", nargs="?", choices=["-"], metavar="-", help="read the text from stdin")
    p.add_argument("--agent", required=True, metavar="EMAIL")
    p.add_argument("--file", metavar="F", help="read the text from this UTF-8 file")
    p.add_argument("--attach", action="append", metavar="FILE", help="attach a file (repeatable)")
    p.add_argument("--status", choices=("open", "answered", "closed"), default="answered",
                   help="the ticket's status after the reply (default: answered)")  # fmt: skip
    p = verbs.add(ticket, "merge", cmd_ticket_merge, "merge a ticket into another (desk's merge)")
    p.add_argument("number")
    p.add_argument("--into", required=True, metavar="NUMBER")
    p.add_argument("--agent", required=True, metavar="EMAIL")
