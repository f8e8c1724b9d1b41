"""Mail that reports on other mail: complaints, service notifications, list managers' answers.

A pure function of a parsed mail. Standard delivery status notifications (RFC 3464) are
recognised in route.py, mailer-daemon and postmaster senders in bounceforms.py; this module
adds what comes in other shapes:

- abuse and spam complaints: ARF (RFC 5965, `multipart/report; report-type=feedback-report`)
  and the older forms of large mailbox providers (the original as `message/rfc822` and a short
  text, from an abuse or staff address);
- notifications that mail services wrap in their own format: Amazon SES events delivered
  through SNS (a JSON body, `x-amz-sns-*` headers, sent by sns.amazonaws.com);
- answers of mailing-list managers (fml, Mailman, majordomo, ezmlm, Sympa, LISTSERV): an
  error or "you are not a member" answer is a bounce, and so is fml's `Loop Alert`; anything
  else they send is automatic;
- an automatic complaint (`Auto-Submitted` other than "no") that names itself one;
- bounces known by their form (bounceforms.py): a notice's subject from a machine mailbox or
  with its text, a bounce forwarded by a person without a word of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketmail.mail.bounceforms import bounce_by_form, bounce_sender, forwarded_bounce
from ticketmail.mail.parse import ParsedMail

__all__ = ["Report", "auto_submitted", "recognise_report"]


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
# fml's notices about a mail it will not distribute: a loop, a security check; fml may put
# the list's tag before them ("[elena:01234] Loop Alert: ...").
_LIST_SYSTEM_ERROR = re.compile(
    r"^\s*(?:\[[^\]\n]{0,80}\]\s*)?(?:fml\s+)?(?:loop alert|loop back warning|"
    r"warning: unix from loop|security alert|fml system error)",
    re.IGNORECASE,
)
# fml's own marks where its headers are missing: its Message-ID form, its name in the text.
_FML_MESSAGE_ID = re.compile(r"^<\d+\.FML[A-Z]*\d*\.", re.IGNORECASE)
_FML_TEXT = re.compile(r"\bfml\b", re.IGNORECASE)
# An enclosed mail's header lines in a text body (a complaint quotes the reported mail so).
_HEADER_BLOCK = re.compile(r"^(?:message-id|received|return-path)\s*:", re.I | re.M)
# An ARF report (RFC 5965) written as plain text: its Feedback-Type and one more of its fields.
_ARF_TEXT = re.compile(r"^feedback-type\s*:\s*[\w-]+\s*$", re.I | re.M)
_ARF_FIELDS = re.compile(
    r"^(?:user-agent|version|original-mail-from|original-rcpt-to|arrival-date|source-ip|"
    r"reported-domain)\s*:",
    re.I | re.M,
)
_REPLY_OR_FORWARD = re.compile(r"^\s*\[?\s*(?:re|aw|fwd?|wg|tr|vs|sv)\s*:", re.IGNORECASE)
# What an automatic complaint calls itself, in its subject or its first lines.
_COMPLAINT_WORDS = re.compile(
    r"\b(?:complaints?|abuse|(?:spam|junk|phishing)[- ]?(?:reports?|complaints?|notifications?)|"
    r"reported (?:it )?as (?:spam|junk)|unsolicited|feedback[- ]report|beschwerde|missbrauch|"
    r"spam-?meldung|spamcop)\b|迷惑メール|苦情",
    re.IGNORECASE,
)
_TEXT_LOOKED_AT = 4000


def auto_submitted(mail: ParsedMail) -> bool:
    """Marked automatic: an `Auto-Submitted` field other than "no" (RFC 3834)."""
    return any(
        re.split(r"[;(\s]", v.strip(), maxsplit=1)[0].lower() not in ("", "no")
        for v in mail.header("auto-submitted")
    )


def _local_domain(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return (local, domain) if local else (address, "")


def recognise_report(mail: ParsedMail) -> Report | None:
    """The kind of report a mail is, or None for a mail that may start a conversation."""
    local, domain = _local_domain(mail.from_addr)
    types = {a.content_type for a in mail.attachments}
    ctype = " ".join(mail.header("content-type"))
    if "message/feedback-report" in types or _ARF.search(ctype) or _arf_as_text(mail):
        return Report("feedback-report", bounce=True)
    encloses = "message/rfc822" in types or "text/rfc822-headers" in types
    if encloses and _COMPLAINT_LOCAL.match(local):
        return Report("complaint", bounce=True)
    sns = any(name.startswith("x-amz-sns-") for name, _ in mail.headers)
    if (sns or domain.endswith(_SES_DOMAINS)) and _SES_JSON.search(mail.body_text):
        return Report("ses-notification", bounce=True)
    if bounce_by_form(mail):
        return Report("bounce-notice", bounce=True)
    if forwarded_bounce(mail):
        return Report("forwarded-bounce", bounce=True)
    if _automatic_complaint(mail, local, encloses):
        return Report("complaint", bounce=True)
    if _LIST_SYSTEM_ERROR.match(mail.subject) and (
        _LIST_LOCAL.match(local)
        or any(mail.header(h) for h in _LIST_HEADERS)
        or _FML_MESSAGE_ID.match(mail.message_id)
        or _FML_TEXT.search(mail.body_text[:_TEXT_LOOKED_AT])
    ):
        return Report("list-manager-error", bounce=True)
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


def _automatic_complaint(mail: ParsedMail, local: str, encloses: bool) -> bool:
    """A complaint marked automatic (Auto-Submitted other than "no"): from a complaints
    address, or calling itself one in its subject, or in its text beside the reported mail
    (enclosed, or its header lines quoted)."""
    dsn = mail.content_type == "multipart/report" or mail.has_delivery_status
    if not auto_submitted(mail) or dsn or bounce_sender(mail) is not None:
        return False  # a DSN that names spam as the reason of a refusal is a bounce
    if _COMPLAINT_LOCAL.match(local) or _COMPLAINT_WORDS.search(mail.subject):
        return True
    text = mail.body_text[:_TEXT_LOOKED_AT]
    quotes = encloses or _HEADER_BLOCK.search(text) is not None
    return quotes and _COMPLAINT_WORDS.search(text) is not None


def _arf_as_text(mail: ParsedMail) -> bool:
    """A feedback report whose fields stand in the text, not in a message/feedback-report
    part (no person's reply or forward: one who asks about a report writes a conversation)."""
    text = mail.body_text[:_TEXT_LOOKED_AT]
    return (
        _ARF_TEXT.search(text) is not None
        and _ARF_FIELDS.search(text) is not None
        and not _REPLY_OR_FORWARD.match(mail.subject)
    )
