"""What a bounce says: which mail of ours failed, for whom, and whether for good (RFC 3464).

Also the reports that are no DSN: abuse complaints (ARF, RFC 5965, and older forms), Amazon
SES notifications (JSON through SNS), carriers' and older MTAs' text bounces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ticketmail.mail.charsets import decode_bytes
from ticketmail.mail.parse import ParsedMail
from ticketmail.mail.reports import recognise_report

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
# ARF (RFC 5965): the complaining address, what kind of feedback.
_ORIGINAL_RCPT = re.compile(
    r"^\s*Original-Rcpt-To:\s*<?([^\s<>;]+@[^\s<>;]+)>?", re.IGNORECASE | re.MULTILINE
)
_FEEDBACK_TYPE = re.compile(r"^\s*Feedback-Type:\s*([\w-]+)", re.IGNORECASE | re.MULTILINE)
_ANY_ID = re.compile(r"<[^<>\s]{1,500}>")


@dataclass(frozen=True, slots=True)
class BounceReport:
    message_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    status: str
    permanent: bool
    delayed: bool
    reason: str
    # False for a report that names a mail but no failure (a delivery notification): the
    # mail is not marked. A complaint is a failure: no more automatic mail to that address.
    failed: bool = True


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
    """Read a delivery status notification, standard (RFC 3464) or one of the classic forms;
    a complaint (ARF or older) or an Amazon SES notification."""
    ses = _ses_notification(mail.body_text)
    if ses is not None:
        return ses
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
    feedback = _FEEDBACK_TYPE.findall(text)
    if feedback or _is_complaint(mail):
        recipients += [r.casefold() for r in _ORIGINAL_RCPT.findall(text)]
        return BounceReport(
            message_ids=_unique(message_ids)[:20],
            recipients=_unique(recipients)[:20],
            status="",
            permanent=True,
            delayed=False,
            reason=f"complaint: {feedback[0] if feedback else 'abuse'}",
        )
    return BounceReport(
        message_ids=_unique(message_ids)[:20],
        recipients=_unique(recipients)[:20],
        status=status,
        permanent=status.startswith("5") and not delayed,
        delayed=delayed,
        reason=reason,
    )


def _is_complaint(mail: ParsedMail) -> bool:
    report = recognise_report(mail)
    return report is not None and report.kind in ("feedback-report", "complaint")


def _ses_notification(body: str) -> BounceReport | None:
    """An Amazon SES event (Bounce, Complaint, Delivery, ...) as SNS mails it: a JSON body,
    or None. The mail it reports is named in mail.commonHeaders.messageId."""
    start = body.find("{")
    if start < 0 or ("notificationType" not in body and "eventType" not in body):
        return None
    try:
        event = json.loads(body[start : body.rfind("}") + 1])
        if isinstance(event, dict) and isinstance(event.get("Message"), str):
            event = json.loads(event["Message"])  # an SNS envelope (email-json) around it
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    kind = str(event.get("notificationType") or event.get("eventType") or "")
    if not kind:
        return None
    sent = _dict(event.get("mail"))
    ids = _ANY_ID.findall(str(_dict(sent.get("commonHeaders")).get("messageId", "")))
    for header in sent.get("headers") or ():
        header = _dict(header)
        if str(header.get("name", "")).lower() == "message-id":
            ids += _ANY_ID.findall(str(header.get("value", "")))
    detail = _dict(event.get(kind[:1].lower() + kind[1:]))
    people = detail.get("bouncedRecipients") or detail.get("complainedRecipients") or ()
    recipients = [str(_dict(p).get("emailAddress", "")).casefold() for p in people]
    statuses = [str(_dict(p).get("status", "")) for p in people if _dict(p).get("status")]
    diagnostics = [str(_dict(p).get("diagnosticCode", "")) for p in people]
    status = statuses[0] if statuses else ""
    bounce_type = str(detail.get("bounceType", ""))
    complaint = kind == "Complaint"
    reason = next((d for d in diagnostics if d), "") or f"ses {kind.lower()} {bounce_type}".strip()
    return BounceReport(
        message_ids=_unique(ids)[:20],
        recipients=_unique([r for r in recipients if "@" in r])[:20],
        status=status,
        permanent=complaint or bounce_type == "Permanent",
        delayed=kind == "DeliveryDelay",
        reason=("complaint: ses" if complaint else reason)[:300],
        failed=kind in ("Bounce", "Complaint"),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
