"""What a person types, read into values: a mail address, a day, a list of mail domains, a
phone number.

The command line and the web's forms both read with these; a bad value raises UsageError
with a line that names the field."""

from __future__ import annotations

import re
from datetime import date

from ticketmail.errors import UsageError

__all__ = ["MAX_PHONE", "parse_day", "parse_domains", "parse_email", "parse_phone", "tel_uri"]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # only this one of ISO 8601's forms
# local@domain.tld: no spaces, brackets, quotes or second @; dot-separated non-empty labels.
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\.]+(\.[^@\s<>()\[\],;:\"\\.]+)+")
MAX_PHONE = 30  # characters of a phone number as written, spaces included
# As people write them: digits, spaces, +, -, /, ( and ) ("+49 (0)30 / 123 45-6"); a digit needed.
_PHONE = re.compile(r"[0-9 +\-/()]*[0-9][0-9 +\-/()]*")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


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


def parse_domains(text: str) -> tuple[str, ...]:
    """`--domains schule.example,schule-b.example`: mail domains, case-folded; empty: none."""
    found: list[str] = []
    for item in text.split(","):
        domain = item.strip().casefold().removeprefix("@")
        if not domain:
            continue
        if not _DOMAIN.fullmatch(domain):
            raise UsageError(f"--domains: {item.strip()!r} is not a mail domain")
        if domain not in found:
            found.append(domain)
    return tuple(found)


def parse_phone(text: str) -> str:
    """A phone number as written (inner runs of spaces made one), '' for none; anything but
    digits, spaces, +, -, /, ( and ), or more than MAX_PHONE characters, is refused."""
    value = " ".join(text.split())
    if not value:
        return ""
    if len(value) > MAX_PHONE or not _PHONE.fullmatch(value):
        raise UsageError(
            f"phone: {text.strip()[:40]!r} is not a phone number (digits, spaces, "
            f"+ - / ( ), at most {MAX_PHONE} characters)"
        )
    return value


def tel_uri(phone: str) -> str:
    """The `tel:` link of a phone number: its leading + and its digits ('' for none). In the
    international form a "(0)" is the trunk prefix dialled only at home: "+49 (0)30 123"
    is tel:+4930123."""
    number = phone.strip()
    international = number.startswith("+")
    if international:
        number = number.replace("(0)", "")
    digits = "".join(c for c in number if c in "0123456789")
    if not digits:
        return ""
    return "tel:" + ("+" if international else "") + digits
