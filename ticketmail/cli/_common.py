"""What every command shares: reading a person's input, printing tables and JSON, the store."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from typing import Any

from ticketmail.config import Config
from ticketmail.errors import UsageError
from ticketmail.storage.store import Store

__all__ = [
    "LANGS",
    "iso_or_none",
    "now_utc",
    "parse_day",
    "parse_email",
    "parse_number",
    "plural",
    "print_json",
    "print_table",
    "with_store",
]

LANGS = ("de", "en")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # only this one of ISO 8601's forms
# local@domain.tld: no spaces, brackets, quotes or second @; dot-separated non-empty labels.
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\.]+(\.[^@\s<>()\[\],;:\"\\.]+)+")


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def parse_day(text: str, *, what: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def parse_email(text: str, *, what: str = "email") -> str:
    value = text.strip()
    if not _ADDRESS.fullmatch(value) or not value.isprintable():
        raise UsageError(f"{what}: {text!r} is not a mail address")
    return value.casefold()


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


async def with_store(config: Config, action: Callable[[Store], Coroutine[Any, Any, int]]) -> int:
    store = await Store.open(config.data_dir)
    try:
        return await action(store)
    finally:
        await store.close()
