"""The `outbox` commands: mail ticketmail sends, and sending it again."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ticketmail.cli._common import (
    Verbs,
    iso_or_none,
    now_utc,
    parse_number,
    print_json,
    print_table,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import UsageError
from ticketmail.models import (
    OutboxEntry,
)
from ticketmail.storage.store import Store


def outbox_json(e: OutboxEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "created_at": iso_or_none(e.created_at),
        "kind": e.kind,
        "ticket": str(e.ticket) if e.ticket is not None else None,
        "recipient": e.recipient,
        "message_id": e.message_id,
        "subject": e.subject,
        "status": e.status,
        "attempts": e.attempts,
        "next_attempt_at": iso_or_none(e.next_attempt_at),
        "last_error": e.last_error,
        "sent_at": iso_or_none(e.sent_at),
    }


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        entries = await store.list_outbox()
        if args.json:
            print_json([outbox_json(e) for e in entries])
            return 0
        print_table(
            [
                (
                    e.id,
                    e.status,
                    e.kind,
                    e.ticket,
                    e.recipient,
                    e.attempts,
                    iso_or_none(e.next_attempt_at),
                    e.last_error[:60],
                )
                for e in entries
            ],
            ("ID", "STATUS", "KIND", "TICKET", "RECIPIENT", "ATTEMPTS", "NEXT_TRY", "LAST_ERROR"),
        )
        return 0

    return asyncio.run(with_store(config, run))


def cmd_outbox_retry(config: Config, args: argparse.Namespace) -> int:
    if args.all == (args.id is not None):
        raise UsageError("outbox retry takes an ID or --all")
    wanted = None if args.all else parse_number(args.id, what="outbox ID")

    async def run(store: Store) -> int:
        ids = await store.requeue_outbox(wanted, now=now_utc())
        for entry in ids:
            print(f"outbox {entry}: queued again")
        return 0

    return asyncio.run(with_store(config, run))


def register(verbs: Verbs) -> None:
    outbox = verbs.group("outbox", "mail ticketmail sends")
    verbs.add(outbox, "list", cmd_outbox_list, "list queued, sent and failed mail", listing=True)
    p = verbs.add(outbox, "retry", cmd_outbox_retry, "queue failed mail again")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--all", action="store_true", help="every failed or bounced entry")
