"""The `quarantine` commands: mail that failed processing, shown and processed again."""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import TYPE_CHECKING, Any

from ticketmail.cli._common import (
    Verbs,
    iso_or_none,
    parse_number,
    plural,
    print_json,
    print_table,
    with_intake,
    with_store,
)
from ticketmail.config import Config
from ticketmail.errors import TicketmailError, UsageError
from ticketmail.models import (
    QuarantineEntry,
)
from ticketmail.storage.store import Store

if TYPE_CHECKING:
    from ticketmail.intake.process import Intake


def quarantine_json(e: QuarantineEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "received_at": iso_or_none(e.received_at),
        "envelope_from": e.envelope_from,
        "envelope_to": list(e.envelope_to),
        "sha256": e.raw_sha256,
        "size": e.size,
        "error": e.error,
        "status": e.status,
        "outcome": e.outcome,
    }


# A header line ("Name:"), a folded continuation, or the mbox "From " line (as email.feedparser).
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]+:|[\t ]")


# Control characters a terminal could act on; tab and line feed stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def header_block(raw: bytes) -> str:
    """The first header block of a raw mail as printable text; the body is never included.

    It ends at the first line that is neither a header nor a continuation (the empty line,
    normally). Undecodable bytes and control characters become U+FFFD.
    """
    lines: list[str] = []
    for line in raw.splitlines():
        if not _HEADER_LINE.match(line):
            break
        lines.append(printable(line.decode("utf-8", errors="replace")))
    return "".join(f"{line}\n" for line in lines)


def printable(text: str) -> str:
    """`text` with every control character but tab and line feed replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        entries = await store.list_quarantine()
        if args.json:
            print_json([quarantine_json(e) for e in entries])
            return 0
        print_table(
            [
                (
                    e.id,
                    e.status,
                    iso_or_none(e.received_at),
                    e.envelope_from or "<>",
                    e.size,
                    e.outcome,
                    e.error[:70],
                )
                for e in entries
            ],
            ("ID", "STATUS", "RECEIVED", "ENVELOPE_FROM", "SIZE", "OUTCOME", "ERROR"),
        )
        return 0

    return asyncio.run(with_store(config, run))


def cmd_quarantine_show(config: Config, args: argparse.Namespace) -> int:
    """One quarantined mail: what the list says, the whole error and the mail's headers."""
    from ticketmail.storage.blobs import open_blobs
    from ticketmail.storage.dialect import DATABASE_ERRORS

    wanted = parse_number(args.id, what="quarantine ID")

    async def run(store: Store) -> int:
        entry = await store.get_quarantine(wanted)
        blobs = open_blobs(config.paths.blobs, config.database)
        unreadable: tuple[type[Exception], ...] = (OSError, *DATABASE_ERRORS)
        try:
            raw = await asyncio.to_thread(blobs.get, entry.raw_sha256)
        except unreadable as exc:
            raise TicketmailError(
                f"quarantine entry {entry.id}: cannot read the raw mail {entry.raw_sha256}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        finally:
            blobs.close()
        headers = header_block(raw)
        if args.json:
            print_json({**quarantine_json(entry), "headers": headers})
            return 0
        state = entry.status if entry.status == "held" else f"{entry.status}: {entry.outcome}"
        print(f"Quarantine entry {entry.id}")
        print(f"Status:        {state}")
        print(f"Received:      {iso_or_none(entry.received_at)}")
        print(f"Envelope from: {printable(entry.envelope_from) or '<>'}")
        print(f"Envelope to:   {printable(', '.join(entry.envelope_to))}")
        print(f"Size:          {plural(entry.size, 'byte')}")
        print(f"SHA-256:       {entry.raw_sha256}")
        error = printable(entry.error.replace("\r\n", "\n")).splitlines()
        print("Error:         " + "\n               ".join(error))
        print()
        print(headers, end="")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_quarantine_retry(config: Config, args: argparse.Namespace) -> int:
    if args.all == (args.id is not None):
        raise UsageError("quarantine retry takes an ID or --all")
    wanted = None if args.all else parse_number(args.id, what="quarantine ID")

    async def run(intake: Intake) -> int:
        from ticketmail.intake.replay import (  # the daemon's parts: only here
            quarantined,
            retry_quarantined,
        )

        failures = 0
        for entry in await quarantined(intake, wanted):
            result = await retry_quarantined(intake, entry)
            if result.error is not None:
                failures += 1
                print(f"quarantine {entry.id}: still failing: {result.error}")
                continue
            where = f", ticket {result.ticket}" if result.ticket is not None else ""
            print(f"quarantine {entry.id}: {result.outcome}{where}")
        return 1 if failures else 0

    return asyncio.run(with_intake(config, run))


def register(verbs: Verbs) -> None:
    quarantine = verbs.group("quarantine", "mail that failed processing")
    verbs.add(quarantine, "list", cmd_quarantine_list, "list quarantined mail", listing=True)
    p = verbs.add(
        quarantine, "show", cmd_quarantine_show, "show one entry: error, headers", listing=True
    )
    p.add_argument("id", metavar="ID")
    p = verbs.add(quarantine, "retry", cmd_quarantine_retry, "process quarantined mail again")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--all", action="store_true", help="every held entry")
