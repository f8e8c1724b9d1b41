"""Times as the support team types them, and dates, times, relative times and sizes as a
reader of a page or mail expects them, with Babel (CLDR), in `web.timezone` (SPEC 6).

A `datetime-local` input sends `YYYY-MM-DDTHH:MM` (seconds when its step asks for them) in
no zone: it is read in the configured one. Stored times stay UTC (storage/_rows.py).

German reads "06.12.2026, 08:31", English (British, as a European team writes it)
"6 Dec 2026, 08:31": CLDR's medium date and short time, joined by the language's own
pattern. Babel is used here and nowhere else.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import (
    format_date,
    format_time,
    format_timedelta,
    get_datetime_format,
    get_timezone_name,
)
from babel.numbers import format_decimal

__all__ = [
    "LOCALES", "ago", "full_when", "local_day", "local_input", "local_when", "parse_local",
    "size_text", "utc_iso",
]  # fmt: skip

# Our languages (web/i18n.py) as CLDR locales; English is British: day before month, 24 hours.
LOCALES = {"de": "de_DE", "en": "en_GB"}
_UNITS = ("B", "KB", "MB")

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
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def local_input(value: datetime | str | None, zone: str) -> str:
    """An instant as a `datetime-local` input holds it in `zone` ('' for none)."""
    if value is None or value == "":
        return ""
    return _moment(value).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


_PARSED = {lang: Locale.parse(name) for lang, name in LOCALES.items()}  # parsed once: 60 µs a call


def _locale(lang: str) -> Locale:
    return _PARSED.get(lang, _PARSED["en"])


def _joined(local: datetime, lang: str, date_width: str) -> str:
    locale = _locale(lang)
    date = format_date(local, date_width, locale=locale)
    time = format_time(local, "short", locale=locale)
    return str(get_datetime_format("medium", locale=locale)).format(time, date)


def local_when(value: datetime | str, lang: str, zone: str) -> str:
    """An instant as read in `zone`: '06.12.2026, 08:31' (de), '6 Dec 2026, 08:31' (en)."""
    return _joined(_moment(value).astimezone(ZoneInfo(zone)), lang, "medium")


def full_when(value: datetime | str, lang: str, zone: str) -> str:
    """The full date, time and zone: 'Sonntag, 6. Dezember 2026, 08:31 Mitteleuropäische
    Normalzeit (Europe/Berlin)'."""
    local = _moment(value).astimezone(ZoneInfo(zone))
    name = get_timezone_name(local, "long", locale=_locale(lang))
    return f"{_joined(local, lang, 'full')} {name} ({zone})"


def local_day(day: date, lang: str) -> str:
    """A calendar day (a contract's end): '31.12.2026' (de), '31 Dec 2026' (en)."""
    return format_date(day, "medium", locale=_locale(lang))


def utc_iso(value: datetime | str) -> str:
    """The instant in UTC for a `<time datetime>`: '2026-12-06T07:31:00Z'."""
    return _moment(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(value: datetime | str, now: datetime, lang: str) -> str:
    """How long before `now` (or after it): 'vor 5 Minuten', '5 minutes ago', 'in 2 Tagen'."""
    delta = _moment(value) - _moment(now)
    return format_timedelta(delta, add_direction=True, locale=_locale(lang))


def size_text(size: int, lang: str) -> str:
    """A size in bytes: '512 B', '1,5 KB' / '1.5 KB', '25,0 MB' / '25.0 MB' (1024 a step)."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            break
        value /= 1024
    pattern = "#,##0" if unit == "B" else "#,##0.0"
    return f"{format_decimal(value, pattern, locale=_locale(lang))} {unit}"
