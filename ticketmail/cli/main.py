"""The `ticketmail` command line: one clear line on error, exit 0 / 1 / 2, --json for lists."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from ticketmail.cli import desk as cli_desk
from ticketmail.cli._common import (
    LANGS,
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
from ticketmail.config import Config, load_config, resolve_config_path
from ticketmail.errors import ConfigError, NotFoundError, RefusedError, TicketmailError, UsageError
from ticketmail.logs import configure_logging
from ticketmail.models import (
    STATUSES,
    Customer,
    HeldEntry,
    OutboxEntry,
    QuarantineEntry,
    TicketSummary,
    TicketView,
)
from ticketmail.outbound.compose import Templates
from ticketmail.storage.store import CustomerRow, Store, UserRow

__all__ = ["main"]

# --- JSON shapes (SPEC section 7) --------------------------------------------------------------


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
        "previous_ticket": str(view.previous_number) if view.previous_number else None,
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


def customer_json(c: Customer, users: int, today: date) -> dict[str, Any]:
    return {
        "number": c.number,
        "name": c.name,
        "support_until": c.support_until.isoformat() if c.support_until else None,
        "trial_until": c.trial_until.isoformat() if c.trial_until else None,
        "supported": c.has_support(today),
        "users": users,
    }


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


# --- CSV imports --------------------------------------------------------------------------------


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with exactly `columns` (any order), each with its line number."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # bytes: keep a CR inside a cell
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    # newline="": quoted cells may hold line breaks, and only CR/LF end a line.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise UsageError(f"{path}: empty file, expected a header row") from None
    except csv.Error as exc:
        raise UsageError(f"{path} line 1: {exc}") from None
    if sorted(header) != sorted(columns):
        raise UsageError(
            f"{path} line 1: header must name the columns {','.join(columns)}, "
            f"got {','.join(header)}"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    while True:
        line = reader.line_num + 1  # where this record starts
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UsageError(f"{path} line {line}: {exc}") from None
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise UsageError(
                f"{path} line {line}: expected {len(header)} fields, got {len(values)}"
            )
        rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=True)}))
    return rows


def parse_customer_csv(path: Path) -> list[CustomerRow]:
    rows: list[CustomerRow] = []
    seen: set[str] = set()
    for line, r in _read_csv(path, ("number", "name", "support_until", "trial_until")):
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


def parse_user_csv(path: Path) -> list[tuple[int, UserRow]]:
    rows: list[tuple[int, UserRow]] = []
    seen: set[str] = set()
    for line, r in _read_csv(path, ("email", "customer", "name", "lang")):
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
        rows.append((line, UserRow(email, r["customer"], r["name"], lang)))
    return rows


# --- commands -----------------------------------------------------------------------------------


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from ticketmail.daemon import serve

    try:
        return asyncio.run(serve(config))
    except OSError as exc:
        raise TicketmailError(
            f"cannot listen on {config.smtp.host}:{config.smtp.port}: {exc.strerror or exc}"
        ) from None


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    try:
        Templates(config.templates_dir).check()
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: templates.dir: {exc}") from None
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{config.source}: storage.data_dir: {data_dir} is not writable: {exc.strerror}"
        ) from None
    from ticketmail.smtp.server import tls_context

    tls_context(config)
    probe = _probe_relay(config) if args.probe_relay else None
    effective = dataclasses.asdict(config)
    effective.pop("source")
    if effective["relay"]["password"]:
        effective["relay"]["password"] = "********"  # noqa: S105 - the mask, not a secret
    else:
        effective["relay"]["password"] = "(not set)"  # noqa: S105
    if effective["mail"]["secret"]:
        effective["mail"]["secret"] = "********"  # noqa: S105 - the mask, not a secret
    else:
        effective["mail"]["secret"] = "(not set: a random secret kept in storage.data_dir)"  # noqa: S105
    if args.json:
        report: dict[str, Any] = {"source": config.source, "config": effective}
        if probe is not None:
            report["relay_probe"] = probe
        print_json(report)
        return 0
    print(f"# effective configuration from {config.source}")
    print(f"# templates: {config.templates_dir}  (checked: de, en)")
    if probe is not None:
        print(f"# {probe}")
    for section, values in effective.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            shown = list(value) if isinstance(value, tuple) else value
            print(f"{key} = {json.dumps(shown, ensure_ascii=False)}")
    print("\nok")
    return 0


def _probe_relay(config: Config) -> str:
    """A line saying the relay answered, or a TicketmailError saying why not (exit 1)."""
    from ticketmail.outbound.relay import RelayError, probe_relay

    relay = config.relay
    if relay.transport == "file":
        sent = config.paths.sent
        try:
            sent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=sent, prefix=".probe-"):
                pass
        except OSError as exc:
            raise TicketmailError(f"relay: cannot write {sent}: {exc.strerror}") from None
        return f"relay: file transport writes to {sent}"
    try:
        greeting = asyncio.run(probe_relay(relay, hostname=config.smtp.hostname))
    except RelayError as exc:
        raise TicketmailError(
            f"relay {relay.host}:{relay.port} ({relay.security}) not usable: {exc}"
        ) from None
    login = f", logged in as {relay.username}" if relay.username else ""
    return f"relay {relay.host}:{relay.port} ({relay.security}) answered: {greeting}{login}"


def cmd_customer_add(config: Config, args: argparse.Namespace) -> int:
    row = CustomerRow(
        args.number.strip(),
        args.name.strip(),
        parse_day(args.support_until or "", what="--support-until"),
        parse_day(args.trial_until or "", what="--trial-until"),
    )
    if not row.number or not row.name:
        raise UsageError("customer number and name must not be empty")

    async def run(store: Store) -> int:
        await store.add_customers([row], now=now_utc())
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

    async def run(store: Store) -> int:
        await store.add_customers(rows, now=now_utc())
        print(f"{plural(len(rows), 'customer')} imported")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    row = UserRow(
        parse_email(args.email), args.customer.strip(), (args.name or "").strip(), args.lang
    )

    async def run(store: Store) -> int:
        if row.customer not in {c.number for c, _ in await store.list_customers()}:
            raise NotFoundError(f"customer {row.customer} does not exist")
        await store.add_users([row], now=now_utc())
        print(f"user {row.email} saved")
        return 0

    return asyncio.run(with_store(config, run))


def _customer_option(value: str | None) -> str | None:
    """--customer NUMBER, stripped; an empty one is what `customer add` refuses."""
    customer = value.strip() if value is not None else None
    if customer == "":
        raise UsageError("--customer: a customer number is needed")
    return customer


async def _check_customer(store: Store, customer: str | None) -> None:
    """A --customer filter must name a customer (an empty list would hide a typo)."""
    if customer is not None and customer not in {c.number for c, _ in await store.list_customers()}:
        raise NotFoundError(f"customer {customer} does not exist")


def cmd_user_list(config: Config, args: argparse.Namespace) -> int:
    customer = _customer_option(args.customer)

    async def run(store: Store) -> int:
        await _check_customer(store, customer)
        users = await store.list_users(customer=customer)
        if args.json:
            print_json(
                [
                    {
                        "email": u.email,
                        "name": u.name,
                        "lang": u.lang,
                        "customer": u.customer.number,
                    }
                    for u in users
                ]
            )
            return 0
        print_table(
            [(u.email, u.name, u.lang, u.customer.number, u.customer.name) for u in users],
            ("EMAIL", "NAME", "LANG", "CUSTOMER", "INSTITUTION"),
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


def cmd_ticket_list(config: Config, args: argparse.Namespace) -> int:
    """Newest first; --since keeps the tickets with activity on or after that day (UTC)."""
    since = parse_day(args.since, what="--since") if args.since is not None else None
    if args.since is not None and since is None:
        raise UsageError("--since: a date is needed (YYYY-MM-DD)")
    customer = _customer_option(args.customer)

    async def run(store: Store) -> int:
        await _check_customer(store, customer)
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
        print(f"Status:    {s.status}")
        print(f"Customer:  {s.customer} {s.customer_name}")
        print(f"Requester: {s.requester}")
        print(f"Created:   {iso_or_none(s.created_at)}   Updated: {iso_or_none(s.updated_at)}")
        if view.previous_number:
            print(f"Follows:   closed ticket {view.previous_number}")
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


def cmd_quarantine_show(config: Config, args: argparse.Namespace) -> int:
    """One quarantined mail: what the list says, the whole error and the mail's headers."""
    from ticketmail.storage.blobs import BlobStore

    wanted = parse_number(args.id, what="quarantine ID")

    async def run(store: Store) -> int:
        entry = await store.get_quarantine(wanted)
        try:
            raw = await asyncio.to_thread(BlobStore(config.paths.blobs).get, entry.raw_sha256)
        except OSError as exc:
            raise TicketmailError(
                f"quarantine entry {entry.id}: cannot read the raw mail {entry.raw_sha256}: "
                f"{exc.strerror or exc}"
            ) from None
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


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    """The database (online backup) first, then the blobs: every blob it names is older."""
    from ticketmail.storage.backup import backup
    from ticketmail.storage.paths import DataPaths

    dest = Path(args.dest)
    source_db = config.paths.database
    if not source_db.is_file():
        raise NotFoundError(f"no database at {source_db} (storage.data_dir)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RefusedError(f"{dest} exists and is not an empty directory")
    try:
        copied = backup(config.paths, DataPaths(dest))
    except OSError as exc:
        raise TicketmailError(f"backup to {dest} failed: {exc.strerror or exc}") from None
    print(f"backup written to {dest}: database and {plural(copied, 'file')}")
    return 0


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
    from ticketmail.daemon import open_parts
    from ticketmail.intake.process import Envelope
    from ticketmail.storage.blobs import BlobStore

    wanted = parse_number(args.id, what="held ID")

    async def run() -> int:
        store, intake = await open_parts(config)
        try:
            entry = await store.get_held(wanted)
            if entry.status != "held":
                raise RefusedError(f"held entry {entry.id} was already {entry.status}")
            raw = BlobStore(config.paths.blobs).get(entry.raw_sha256)
            env = Envelope(entry.envelope_from, entry.envelope_to)
            result = await intake.handle(raw, env, sender_vouched=True)
            await store.resolve_held(entry.id, status="released", outcome=result.outcome,
                                     now=now_utc())  # fmt: skip
        finally:
            intake.admitter.close()
            await store.close()
        where = f", ticket {result.ticket}" if result.ticket is not None else ""
        print(f"held {wanted}: released, {result.outcome}{where}")
        return 0

    return asyncio.run(run())


def cmd_held_drop(config: Config, args: argparse.Namespace) -> int:
    wanted = parse_number(args.id, what="held ID")

    async def run(store: Store) -> int:
        entry = await store.get_held(wanted)
        if entry.status != "held":
            raise RefusedError(f"held entry {entry.id} was already {entry.status}")
        await store.resolve_held(entry.id, status="dropped", outcome="dropped", now=now_utc())
        print(f"held {wanted}: dropped (the raw mail stays on disk)")
        return 0

    return asyncio.run(with_store(config, run))


def cmd_quarantine_retry(config: Config, args: argparse.Namespace) -> int:
    # Imported here: the daemon's parts would slow every other command's start.
    from ticketmail.daemon import open_parts
    from ticketmail.intake.process import Envelope
    from ticketmail.storage.blobs import BlobStore

    if args.all == (args.id is not None):
        raise UsageError("quarantine retry takes an ID or --all")
    wanted = None if args.all else parse_number(args.id, what="quarantine ID")

    async def run() -> int:
        store, intake = await open_parts(config)
        blobs = BlobStore(config.paths.blobs)
        failures = 0
        try:
            if wanted is None:
                entries = [e for e in await store.list_quarantine() if e.status == "held"]
            else:
                entry = await store.get_quarantine(wanted)
                if entry.status != "held":
                    raise RefusedError(f"quarantine entry {entry.id} was already retried")
                entries = [entry]
            for entry in entries:
                raw = blobs.get(entry.raw_sha256)
                env = Envelope(entry.envelope_from, entry.envelope_to)
                try:
                    result = await intake.handle(raw, env)
                except Exception as exc:
                    failures += 1
                    error = f"{type(exc).__name__}: {exc}"
                    await store.note_quarantine_error(entry.id, error)
                    print(f"quarantine {entry.id}: still failing: {error}")
                    continue
                await store.resolve_quarantine(entry.id, outcome=result.outcome, now=now_utc())
                where = f", ticket {result.ticket}" if result.ticket is not None else ""
                print(f"quarantine {entry.id}: {result.outcome}{where}")
        finally:
            intake.admitter.close()
            await store.close()
        return 1 if failures else 0

    return asyncio.run(run())


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Every usage error is one line naming the command and where its help is; exit 2."""

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix("ticketmail").strip()
        where = f"{command}: " if command else ""
        _fail(f"{where}{message}; see '{self.prog} --help'")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a --config given before the command is not overwritten by the default after it.
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (else $TICKETMAIL_CONFIG)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    parser = _Parser(
        prog="ticketmail", description="Inbound mail gateway for support tickets.", parents=[common]
    )
    nouns = parser.add_subparsers(
        dest="noun", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def verb(
        sub: Any,
        name: str,
        handler: Callable[..., int],
        helptext: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=helptext, parents=[common, *parents])
        p.set_defaults(handler=handler, parser=p)
        return p

    verb(nouns, "serve", cmd_serve, "run the daemon in the foreground")
    p = verb(
        nouns, "check-config", cmd_check_config, "validate config, templates, data dir", as_json
    )
    p.add_argument(
        "--probe-relay", action="store_true", help="also connect and log in to the relay"
    )

    customer = nouns.add_parser("customer", help="institutions").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    p = verb(customer, "add", cmd_customer_add, "add or update a customer")
    p.add_argument("number")
    p.add_argument("name")
    p.add_argument("--support-until", metavar="YYYY-MM-DD")
    p.add_argument("--trial-until", metavar="YYYY-MM-DD")
    verb(customer, "list", cmd_customer_list, "list customers", as_json)
    p = verb(
        customer, "import", cmd_customer_import, "import number,name,support_until,trial_until"
    )
    p.add_argument("file", metavar="FILE.csv")

    user = nouns.add_parser("user", help="registered senders").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    p = verb(user, "add", cmd_user_add, "add or update a user")
    p.add_argument("email")
    p.add_argument("--customer", required=True, metavar="NUMBER")
    p.add_argument("--name", default="")
    p.add_argument("--lang", choices=LANGS)
    p = verb(user, "list", cmd_user_list, "list users", as_json)
    p.add_argument("--customer", metavar="NUMBER")
    p = verb(user, "remove", cmd_user_remove, "remove a user")
    p.add_argument("email")
    p = verb(user, "import", cmd_user_import, "import email,customer,name,lang (all or none)")
    p.add_argument("file", metavar="FILE.csv")

    ticket = nouns.add_parser("ticket", help="tickets").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    p = verb(ticket, "list", cmd_ticket_list, "list tickets, newest first", as_json)
    p.add_argument("--customer", metavar="NUMBER")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--since", metavar="YYYY-MM-DD", help="with activity on or after that day")
    p = verb(ticket, "show", cmd_ticket_show, "show one ticket with its articles", as_json)
    p.add_argument("number")
    p = verb(ticket, "status", cli_desk.cmd_ticket_status, "set the status, tell the customers")
    p.add_argument("number")
    p.add_argument("status", choices=STATUSES)
    p.add_argument("--note", metavar="TEXT", help="included in the mail to the customers")
    p = verb(ticket, "reply", cli_desk.cmd_ticket_reply, "answer a ticket as an agent")
    p.add_argument("number")
    p.add_argument("stdin", nargs="?", choices=["-"], metavar="-", help="read the text from stdin")
    p.add_argument("--agent", required=True, metavar="EMAIL")
    p.add_argument("--file", metavar="F", help="read the text from this UTF-8 file")
    p.add_argument("--attach", action="append", metavar="FILE", help="attach a file (repeatable)")
    p.add_argument("--status", choices=("open", "answered", "closed"), default="answered",
                   help="the ticket's status after the reply (default: answered)")  # fmt: skip

    agent = nouns.add_parser("agent", help="the support team").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    p = verb(agent, "add", cli_desk.cmd_agent_add, "add an agent or change their name")
    p.add_argument("email")
    p.add_argument("--name", required=True)
    verb(agent, "list", cli_desk.cmd_agent_list, "list agents", as_json)
    p = verb(agent, "remove", cli_desk.cmd_agent_remove, "remove an agent")
    p.add_argument("email")

    outbox = nouns.add_parser("outbox", help="mail ticketmail sends").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    verb(outbox, "list", cmd_outbox_list, "list queued, sent and failed mail", as_json)
    p = verb(outbox, "retry", cmd_outbox_retry, "queue failed mail again")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--all", action="store_true", help="every failed or bounced entry")

    held = nouns.add_parser("held", help="mail from unverified senders").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    verb(held, "list", cmd_held_list, "list held mail", as_json)
    p = verb(held, "release", cmd_held_release, "process a held mail as verified")
    p.add_argument("id", metavar="ID")
    p = verb(held, "drop", cmd_held_drop, "drop a held mail (opens nothing)")
    p.add_argument("id", metavar="ID")

    p = verb(nouns, "backup", cmd_backup, "consistent copy of database and files, daemon running")
    p.add_argument("dest", metavar="DEST")

    quarantine = nouns.add_parser("quarantine", help="mail that failed processing").add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    verb(quarantine, "list", cmd_quarantine_list, "list quarantined mail", as_json)
    p = verb(quarantine, "show", cmd_quarantine_show, "show one entry: error, headers", as_json)
    p.add_argument("id", metavar="ID")
    p = verb(quarantine, "retry", cmd_quarantine_retry, "process quarantined mail again")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--all", action="store_true", help="every held entry")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse fills `ticket reply N [-]` at the first positional; a `-` after the options
    # (`ticket reply N --agent A -`) comes back unrecognised and is taken here.
    if extras == ["-"] and getattr(args, "stdin", "-") is None:
        args.stdin = "-"
    elif extras:  # named by the command they were given to, as its own errors are
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        config = load_config(resolve_config_path(getattr(args, "config", None)))
        serving = args.handler is cmd_serve
        configure_logging(
            level=config.log.level if serving else "warning",
            fmt=config.log.format,
        )
        status: int = args.handler(config, args)
        return status
    except TicketmailError as exc:
        _fail(str(exc))
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ticketmail ticket list | head`: the reader left; that is not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's exit quiet
        return 0
    except Exception as exc:
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")
        return 1


def _fail(message: str) -> None:
    """One line on stderr, whatever the message holds (jinja, for one, spans several)."""
    print(
        "ticketmail: " + " | ".join(m.strip() for m in message.splitlines() if m.strip()),
        file=sys.stderr,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
