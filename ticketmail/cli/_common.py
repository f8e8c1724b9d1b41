"""What every command shares: reading a person's input, printing tables and JSON, the store."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketmail.config import Config

if TYPE_CHECKING:
    from ticketmail.intake.process import Intake

from ticketmail.errors import NotFoundError, UsageError
from ticketmail.inputs import parse_day, parse_email
from ticketmail.storage.dialect import Conn
from ticketmail.storage.store import Store

__all__ = [
    "LANGS",
    "Verbs",
    "check_customer",
    "customer_option",
    "iso_or_none",
    "now_utc",
    "parse_day",
    "parse_email",
    "parse_number",
    "plural",
    "print_json",
    "print_table",
    "read_csv",
    "set_password_from_stdin",
    "with_intake",
    "with_store",
]

LANGS = ("de", "en")


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def parse_number(text: str, *, what: str) -> int:
    """A decimal number typed by a person (ASCII digits, an optional leading #)."""
    digits = text.strip().lstrip("#")
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{text!r} is not {_with_article(what)}")
    return int(digits)


def _with_article(noun: str) -> str:
    """'a ticket number', 'an outbox ID': the article the nouns ticketmail uses take."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def plural(count: int, noun: str) -> str:
    """'1 file', '0 files', '3 files' (nouns whose plural just adds an s)."""
    return f"{count} {noun if count == 1 else noun + 's'}"


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def with_intake(config: Config, action: Callable[[Intake], Coroutine[Any, Any, int]]) -> int:
    """`action` with the daemon's Intake on its store (for mail processed again)."""
    # Imported here: the daemon's parts would slow every other command's start.
    from ticketmail.daemon import open_parts

    store, intake = await open_parts(config)
    try:
        return await action(intake)
    finally:
        intake.admitter.close()
        await store.close()


async def with_store(config: Config, action: Callable[[Store], Coroutine[Any, Any, int]]) -> int:
    store = await Store.open(config.data_dir, config.database)
    try:
        return await action(store)
    finally:
        await store.close()


def read_csv(
    path: Path, columns: tuple[str, ...], *, optional: tuple[str, ...] = ()
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with exactly `columns` (any order) and any of `optional` (read as
    '' where the file has not that column), each with its line number."""
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
    extra = [h for h in header if h in optional]
    twice = len(set(extra)) < len(extra)
    if twice or sorted(h for h in header if h not in optional) != sorted(columns):
        also = f" (and optionally {','.join(optional)})" if optional else ""
        raise UsageError(
            f"{path} line 1: header must name the columns {','.join(columns)}{also}, "
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
        row = dict.fromkeys(optional, "")
        row.update({h: v.strip() for h, v in zip(header, values, strict=True)})
        rows.append((line, row))
    return rows


def customer_option(value: str | None) -> str | None:
    """--customer NUMBER, stripped; an empty one is what `customer add` refuses."""
    customer = value.strip() if value is not None else None
    if customer == "":
        raise UsageError("--customer: a customer number is needed")
    return customer


async def check_customer(store: Store, customer: str | None) -> None:
    """A --customer filter must name a customer (an empty list would hide a typo)."""
    if customer is not None and customer not in {c.number for c, _ in await store.list_customers()}:
        raise NotFoundError(f"customer {customer} does not exist")


class Verbs:
    """How a command group registers its verbs: `verbs.group(noun)`, then `verbs.add(...)`.

    Every verb takes `--config`; `verbs.as_json` is the parent of those that print lists.
    """

    def __init__(self, nouns: Any, common: argparse.ArgumentParser, parser_class: type) -> None:
        self._nouns = nouns
        self._common = common
        self._parser_class = parser_class
        self.as_json = argparse.ArgumentParser(add_help=False)
        self.as_json.add_argument("--json", action="store_true", help="machine-readable output")

    def group(self, noun: str, helptext: str) -> Any:
        """The subcommands of `ticketmail NOUN`."""
        return self._nouns.add_parser(noun, help=helptext).add_subparsers(
            dest="verb", required=True, metavar="VERB", parser_class=self._parser_class
        )

    def add(
        self,
        sub: Any,
        name: str,
        handler: Callable[[Config, argparse.Namespace], int],
        helptext: str,
        *,
        listing: bool = False,
    ) -> argparse.ArgumentParser:
        """`ticketmail [NOUN] NAME`, run by `handler(config, args)`; `sub` is a group, or
        `verbs.top` for a command without a noun."""
        parents = [self._common, self.as_json] if listing else [self._common]
        p: argparse.ArgumentParser = sub.add_parser(name, help=helptext, parents=parents)
        p.set_defaults(handler=handler, parser=p)
        return p

    @property
    def top(self) -> Any:
        return self._nouns


def set_password_from_stdin(
    config: Config, email: str, *, exists: Callable[[Conn, str], object], who: str
) -> int:
    """`user passwd` and `agent passwd`: one line from stdin (never argv), checked as the
    portal checks it, stored as an Argon2id hash; the account's sessions end. `exists(conn,
    email)` says whether `email` is such an account (`who`: the word for it)."""
    from ticketmail.storage import accounts
    from ticketmail.web.security import hash_password, password_problem

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

        def write(conn: Conn) -> None:
            if not exists(conn, email):
                raise NotFoundError(f"{who} {email} does not exist")
            accounts.set_password(conn, email, digest, now=now)
            accounts.end_sessions(conn, email)

        await store.write(write)
        print(f"password of {who} {email} set")
        return 0

    return asyncio.run(with_store(config, run))
