"""Times as the support team types and reads them: in `web.timezone` (SPEC 6), minutes only.

A `datetime-local` input sends `YYYY-MM-DDTHH:MM` (seconds when its step asks for them) in
no zone: it is read in the configured one. Stored times stay UTC (storage/_rows.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["local_input", "local_text", "parse_local"]

_LOCAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?")


def parse_local(text: str, zone: str) -> datetime:
    """The instant (UTC) that `text` names in `zone`; ValueError when it names none."""
    text = text.strip()
    if not _LOCAL.fullmatch(text):
        raise ValueError(text)
    try:
        return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    except OverflowError:  # year 1 or 9999 beyond UTC's range
        raise ValueError(text) from None


def _moment(value: datetime | str) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def local_text(value: datetime | str, zone: str) -> str:
    """An instant (or a stored ISO timestamp) as read in `zone`, e.g. '2026-12-06 14:30
    Europe/Berlin'."""
    return _moment(value).astimezone(ZoneInfo(zone)).strftime(f"%Y-%m-%d %H:%M {zone}")


def local_input(value: datetime | str | None, zone: str) -> str:
    """An instant as a `datetime-local` input holds it in `zone` ('' for none)."""
    if value is None or value == "":
        return ""
    return _moment(value).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")
