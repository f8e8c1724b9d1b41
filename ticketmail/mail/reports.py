"""Mail that reports on other mail: complaints, service notifications, list managers' answers.

A pure function of a parsed mail. Standard delivery status notifications (RFC 3464) and
bounces from mailer-daemon or postmaster senders are recognised in route.py; this module adds
what comes in other shapes:

- abuse and spam complaints: ARF (RFC 5965, `multipart/report; report-type=feedback-report`)
  and the older forms of large mailbox providers (the original as `message/rfc822` and a short
  text, from an abuse or staff address);
- notifications that mail services wrap in their own format: Amazon SES events delivered
  through SNS (a JSON body, `x-amz-sns-*` headers, sent by sns.amazonaws.com);
- answers of mailing-list managers (fml, Mailman, majordomo, ezmlm, Sympa, LISTSERV): an
  error or "you are not a member" answer is a bounce, anything else they send is automatic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketmail.mail.parse import ParsedMail

__all__ = ["Report", "recognise_report"]


@dataclass(frozen=True, slots=True)
class Report:
    """What kind of report a mail is; bounce: it reports on a mail (opens no ticket)."""

    kind: str
    bounce: bool


_COMPLAINT_LOCAL = re.compile(
    r"^(?:abuse|staff|scomp|complaints?|fbl|feedback-?loop|spam-?reports?|report-?spam|"
    r"abuse-?reports?|arf)(?:[+._-].*)?$",
    re.IGNORECASE,
)
_ARF = re.compile(r"report-type\s*=\s*\"?feedback-report", re.IGNORECASE)
_SES_DOMAINS = ("sns.amazonaws.com", "amazonses.com")
# The event's type, also inside an SNS envelope (email-json), where its quotes are escaped.
_SES_JSON = re.compile(r'\\?"(?:notificationType|eventType)\\?"\s*:\s*\\?"[A-Za-z]+')
# Senders of list managers: Mailman's list-bounces/-owner/-request/-admin (fml uses -admin
# too), Sympa's sympa@ and list-request@, owner-list (majordomo, LISTSERV), the managers'
# own addresses.
_LIST_LOCAL = re.compile(
    r"^(?:.+-(?:admin|bounces?|request|owner)(?:[+=].*)?|owner-.+|majordomo|listserv|"
    r"sympa|mailman|fml|ezmlm|listproc|lyris)$",
    re.IGNORECASE,
)
_LIST_HEADERS = ("x-mlserver", "x-ml-name", "x-mailman-version", "x-beenthere", "x-listserver")
_LIST_AGENT = re.compile(r"\b(?:fml|mailman|majordomo|ezmlm|sympa|listserv)\b", re.IGNORECASE)
# What a list manager's error answer says (English and Japanese fml texts): the mail it
# answers was refused or not understood.
_LIST_ERROR = re.compile(
    r"not (?:a )?member|non-?member|not subscribed|not allowed to post|rejected|"
    r"could not be (?:delivered|processed)|undeliverable|returned mail|unknown command|"
    r"command (?:error|failed)|\berror\b|failed|bounced|"
    r"メンバーではありません|会員ではありません|エラー",
    re.IGNORECASE,
)
_TEXT_LOOKED_AT = 4000


def _local_domain(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return (local, domain) if local else (address, "")


def recognise_report(mail: ParsedMail) -> Report | None:
    """The kind of report a mail is, or None for a mail that may start a conversation."""
    local, domain = _local_domain(mail.from_addr)
    types = {a.content_type for a in mail.attachments}
    ctype = " ".join(mail.header("content-type"))
    if "message/feedback-report" in types or _ARF.search(ctype):
        return Report("feedback-report", bounce=True)
    encloses = "message/rfc822" in types or "text/rfc822-headers" in types
    if encloses and _COMPLAINT_LOCAL.match(local):
        return Report("complaint", bounce=True)
    sns = any(name.startswith("x-amz-sns-") for name, _ in mail.headers)
    if (sns or domain.endswith(_SES_DOMAINS)) and _SES_JSON.search(mail.body_text):
        return Report("ses-notification", bounce=True)
    if _LIST_LOCAL.match(local):
        text = mail.subject + "\n" + mail.body_text[:_TEXT_LOOKED_AT]
        if _LIST_ERROR.search(text):
            return Report("list-manager-error", bounce=True)
        return Report("list-manager", bounce=False)
    if any(mail.header(h) for h in _LIST_HEADERS) or any(
        _LIST_AGENT.search(v) for v in mail.header("mailing-list")
    ):
        return Report("list-manager", bounce=False)
    return None
