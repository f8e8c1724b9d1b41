"""What a bounce says: which mail of ours failed, for whom, and whether for good (RFC 3464)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketmail.mail.charsets import decode_bytes
from ticketmail.mail.parse import ParsedMail

__all__ = ["BounceReport", "read_bounce"]

_TEXT_PARTS = frozenset(
    {"message/delivery-status", "text/rfc822-headers", "message/rfc822", "text/plain"}
)
_MAX_TEXT = 256 * 1024
_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{1,500}>)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"^\s*Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_ACTION = re.compile(r"^\s*Action:\s*([a-z]+)", re.IGNORECASE | re.MULTILINE)
_RECIPIENT = re.compile(
    r"^\s*(?:Final|Original)-Recipient:\s*rfc822\s*;\s*<?([^\s<>;]+@[^\s<>;]+)>?",
    re.IGNORECASE | re.MULTILINE,
)
_DIAGNOSTIC = re.compile(r"^\s*Diagnostic-Code:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_ENHANCED = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_SMTP_CODE = re.compile(r"(?<!\d)([45][0-5]\d)[ -]")


@dataclass(frozen=True, slots=True)
class BounceReport:
    message_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    status: str
    permanent: bool
    delayed: bool
    reason: str


def _texts(raw: bytes, mail: ParsedMail) -> str:
    # The raw text holds the delivery-status fields as they are (they are headers of
    # sub-parts to a MIME parser); decoded parts add what was base64 or quoted-printable.
    chunks = [decode_bytes(raw[:_MAX_TEXT], "utf-8"), mail.body_text[:_MAX_TEXT]]
    for att in mail.attachments:
        if att.content_type in _TEXT_PARTS:
            chunks.append(decode_bytes(att.data[:_MAX_TEXT], "utf-8"))
    return "\n".join(chunks)


def _unique(values: list[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return tuple(seen)


def read_bounce(raw: bytes, mail: ParsedMail) -> BounceReport:
    """Read a delivery status notification, standard (RFC 3464) or one of the classic forms."""
    text = _texts(raw, mail)
    message_ids = [m for m in _MESSAGE_ID.findall(text) if m != mail.message_id]
    recipients = [r.casefold() for r in _RECIPIENT.findall(text)]
    recipients += [r.strip().casefold() for v in mail.header("x-failed-recipients")
                   for r in v.split(",") if "@" in r]  # fmt: skip
    actions = {a.lower() for a in _ACTION.findall(text)}
    statuses = _STATUS.findall(text) or _ENHANCED.findall(text)
    status = statuses[0] if statuses else ""
    if not status:
        codes = _SMTP_CODE.findall(text)
        status = f"{codes[0][0]}.0.0" if codes else ""
    delayed = bool(actions) and actions <= {"delayed", "relayed", "delivered", "expanded"}
    diagnostic = _DIAGNOSTIC.findall(text)
    reason = (diagnostic[0] if diagnostic else status or "bounce").strip()[:300]
    return BounceReport(
        message_ids=_unique(message_ids)[:20],
        recipients=_unique(recipients)[:20],
        status=status,
        permanent=status.startswith("5") and not delayed,
        delayed=delayed,
        reason=reason,
    )
