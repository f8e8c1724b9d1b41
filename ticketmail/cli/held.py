"""The `held` commands: mail from senders that could not be verified."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from ticketmail.cli._common import (
    Verbs,
    iso_or_none,
    parse_number,
    print_json,
    print_table,
    with_intake,
    with_store,
)
from ticketmail.config import Config
from ticketmail.models import (
    HeldEntry,
)
from ticketmail.storage.store import Store

if TYPE_CHECKING:
    from ticketmail.intake.process import Intake


def held_json(e: HeldEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "received_at": iso_or_none(e.received_at),
        "envelope_from": e.envelope_from,
        "sender": e.sender,
        "sha256": e.raw_sha256,
        "size": e.size,
        "reason": e.reason,
        "status": e.status,
        "outcome": e.outcome,
    }


def cmd_held_list(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        entries = await store.list_held()
        if args.json:
            print_json([held_json(e) for e in entries])
            return 0
        print_table(
            [(e.id, e.status, iso_or_none(e.received_at), e.sender, e.size, e.reason[:60])
             for e in entries],
            ("ID", "STATUS", "RECEIVED", "SENDER", "SIZE", "REASON"),
        )  # fmt: skip
        return 0

    return asyncio.run(with_store(config, run))


def cmd_held_release(config: Config, args: argparse.Namespace) -> int:
    """Process a held mail as if its sender had been verified (the admin vouches)."""
    wanted = parse_number(args.id, what="held ID")

    async def run(intake: Intake) -> int:
        from ticketmail.intake.replay import (  # the daemon's parts: only here
            release_held,
        )

        result = await release_held(intake, wanted)
        where = f", ticket {result.ticket}" if result.ticket is not None else ""
        print(f"held {wanted}: released, {result.outcome}{where}")
        return 0

    return asyncio.run(with_intake(config, run))


def cmd_held_drop(config: Config, args: argparse.Namespace) -> int:
    wanted = parse_number(args.id, what="held ID")

    async def run(intake: Intake) -> int:
        from ticketmail.intake.replay import (  # the daemon's parts: only here
            drop_held,
        )

        await drop_held(intake, wanted)
        print(f"held {wanted}: dropped (the raw mail stays on disk)")
        return 0

    return asyncio.run(with_intake(config, run))


def register(verbs: Verbs) -> None:
    held = verbs.group("held", "mail from unverified senders")
    verbs.add(held, "list", cmd_held_list, "list held mail", listing=True)
    p = verbs.add(held, "release", cmd_held_release, "process a held mail as verified")
    p.add_argument("id", metavar="ID")
    p = verbs.add(held, "drop", cmd_held_drop, "drop a held mail (opens nothing)")
    p.add_argument("id", metavar="ID")
