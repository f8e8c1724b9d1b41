"""Bounces known by how they look rather than by their MIME type: who sends them (the local
part, the display name), their subjects and texts, and a bounce a person forwards unchanged.

Pure functions of a parsed mail. A standard DSN (`multipart/report`, `message/delivery-status`)
needs none of this; these are the notices of carriers (au/KDDI, Verizon's MMSC), of MTAs that
write plain text (OpenSMTPD, sendmail, qmail, Exim), and the same forwarded by a person.
"""

from __future__ import annotations

import re

from ticketmail.mail.parse import ParsedMail, parse_mail

__all__ = [
    "bounce_by_form",
    "bounce_sender",
    "forwarded_bounce",
    "is_noreply",
    "local_part",
]

# Senders of delivery reports only: mailer-daemon, postmaster (Verizon's post_master, older
# MTAs' postoffice), Exchange's system mailbox.
_BOUNCE_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|post[-_.]?master|post[-_.]?office|"
    r"microsoftexchange[0-9a-f]*)$",
    re.IGNORECASE,
)
# The display names delivery software signs with, whatever the address (OpenSMTPD writes
# "Mailer Daemon", Exim "Mail Delivery System", sendmail "Mail Delivery Subsystem").
_BOUNCE_NAME = re.compile(
    r"^\W*(?:mailer[-_. ]?daemon|mail[-_. ]?daemon|"
    r"mail[-_. ]delivery[-_. ](?:subsystem|system|service))\W*$",
    re.IGNORECASE,
)
# noreply in its spellings (no-reply, no_reply, no.reply, do-not-reply, donotreply,
# dont-reply, ne-pas-repondre, ...), also after a prefix ("jira-noreply", "info.noreply").
_NOREPLY_LOCAL = re.compile(
    r"^(?:[^@]*[._+-])?(?:no[-_.]?reply|no[-_.]?replies|do[-_.]?not[-_.]?reply|"
    r"don'?t[-_.]?reply|do[-_.]?not[-_.]?respond|no[-_.]?response|ne[-_.]?pas[-_.]?repondre|"
    r"nicht[-_.]?antworten|bounces?|notifications?)(?:[+._-].*)?$",
    re.IGNORECASE,
)
# Machine mailboxes that send delivery notices (Verizon's MMSC writes from sysadmin@). A
# person may well write from such an address, so it counts only beside a bounce's subject.
_SYSTEM_LOCAL = re.compile(
    r"^(?:sys[-_.]?admin|root|daemon|system|nobody|mailer|mail[-_.]?admin|mmsc|mta|smtpd?)$",
    re.IGNORECASE,
)
# Subjects of delivery failure notices, as MTAs and carriers write them (not as a person
# answering or forwarding one writes them: no Re:/Fwd: prefix here).
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:"
    r"undeliver(?:able|ed)\b|non[- ]?deliver(?:y|able)\b|returned mail\b|"
    r"mail delivery (?:failed|failure|system|problem)\b|"
    r"(?:message |mail )?delivery (?:status notification|failure|failed)|"
    r"(?:message |mail )delivery (?:notification|problem)|"
    r"delivery notification:\s*delivery has failed|"
    r"failure notice\b|mail system error\b|could not (?:be )?deliver|unable to deliver|"
    r"warning: could not send message|returned to sender\b|message not delivered\b|"
    r"unzustellbar|nicht zustellbar|non remis|onbestelbaar|no se puede entregar|"
    r"メールエラー通知|エラーメール|(?:配信|送信|配送)(?:エラー|不能|失敗)"
    r")",
    re.IGNORECASE,
)
# Phrases of delivery software's notices (and the DSN fields some write as plain text): a
# person asking about a bounce quotes them, a person's own words hardly ever hold them.
_BOUNCE_TEXT = re.compile(
    r"this is the mail system at host|this is the mailer-daemon|this is the qmail-send program|"
    r"the original message was received at|"
    r"i'm (?:afraid|sorry)[^\n]{0,40} (?:wasn't|was not|couldn't|could not) (?:able to )?deliver|"
    r"following addresses? had (?:permanent )?fatal errors|transcript of session follows|"
    r"created automatically by mail delivery software|"
    r"(?:message|mail) could not be delivered|could not be delivered to (?:one|the|any)|"
    r"delivery to the following recipients? (?:has )?failed|"
    r"automatically generated delivery status notification|"
    r"an error has occurred while attempting to deliver|"
    r"your message (?:did not reach|wasn't delivered|was not delivered|could not be)|"
    r"no valid recipients for this mm|unable to deliver (?:your |the )?message|"
    r"delivery has failed to these recipients|couldn't be delivered to|"
    r"konnte nicht zugestellt werden|zustellung an folgende empfänger|"
    r"^[>\s]*(?:final-recipient|diagnostic-code)\s*:|^[>\s]*action\s*:\s*failed|"
    r"^[>\s]*status\s*:\s*5\.\d{1,3}\.\d{1,3}|"
    r"(?:送信|配信|配送)(?:でき|出来)ませんでした|(?:送信|配信|配送)に失敗しました|"
    r"届けることができませんでした|宛先不明|宛先(?:の)?(?:メール)?アドレスが見つかりません",
    re.IGNORECASE | re.MULTILINE,
)
# Forward prefixes of mail clients (Fwd, Fw, German WG, French TR, Nordic VS, ENC/RV, I),
# also Netscape's and old Mozilla's "[Fwd: subject]".
_FORWARD_PREFIX = re.compile(r"^\s*\[?\s*(?:(?:fwd?|wg|tr|vs|enc|rv|i)\s*:\s*)+", re.IGNORECASE)
# Where a client's forwarded text begins: its separator or header block, or the bounce.
_FORWARD_START = re.compile(
    r"^\s*(?:begin forwarded message|[-_=*]{2,}|>|"
    r"(?:from|von|de|subject|betreff|date|datum)\s*:)",
    re.IGNORECASE,
)
# A forwarded header block's sender line naming delivery software, in any client's form:
# `From: Mail Delivery Subsystem <MAILER-DAEMON@x>`, `Von: ... [mailto:postmaster@x]`.
_FORWARDED_FROM = re.compile(
    r"^[>\s*]*(?:from|von|de)\s*:[^\n]{0,200}?(?:"
    r"(?<![\w.-])(?:mailer[-_.]?daemon|mail[-_.]?daemon|post[-_.]?master)@|"
    r"mailer[-_. ]daemon\b|mail[-_. ]delivery[-_. ](?:subsystem|system|service)\b)",
    re.IGNORECASE | re.MULTILINE,
)
_TEXT_LOOKED_AT = 8000
_ENCLOSED = frozenset({"message/rfc822", "text/rfc822-headers"})
_INNER_BYTES = 512 * 1024


def local_part(address: str) -> str:
    return address.rsplit("@", 1)[0] if "@" in address else address


def is_noreply(address: str) -> bool:
    """A noreply-style address: nobody reads what is sent to it."""
    return _NOREPLY_LOCAL.match(local_part(address)) is not None


def bounce_sender(mail: ParsedMail) -> str | None:
    """The signal when the sender is delivery software by address or by display name."""
    if _BOUNCE_LOCAL.match(local_part(mail.from_addr)):
        return "mailer-daemon-sender"
    if _BOUNCE_NAME.match(mail.from_name):
        return "mailer-daemon-name"
    return None


def _bounce_text(mail: ParsedMail) -> bool:
    return _BOUNCE_TEXT.search(mail.body_text[:_TEXT_LOOKED_AT]) is not None


def bounce_by_form(mail: ParsedMail) -> bool:
    """A delivery failure notice by its subject (as software writes it), from a machine
    mailbox, or with the mail it reports enclosed, or in the words of delivery software."""
    if not _BOUNCE_SUBJECT.match(mail.subject):
        return False
    if _SYSTEM_LOCAL.match(local_part(mail.from_addr)) or is_noreply(mail.from_addr):
        return True
    encloses = any(a.content_type in _ENCLOSED for a in mail.attachments)
    return encloses or _bounce_text(mail)


def _on_its_face(mail: ParsedMail) -> bool:
    """A mail that is a bounce without looking further: a DSN, delivery software's sender,
    a bounce's subject with its text."""
    return (
        mail.content_type == "multipart/report"
        or mail.has_delivery_status
        or bounce_sender(mail) is not None
        or bounce_by_form(mail)
    )


def forwarded_bounce(mail: ParsedMail) -> bool:
    """A bounce a person forwarded without a word of their own (`Fwd: Returned mail: ...`),
    the report attached as message/rfc822 or inline. With words of the forwarder's own it is
    a question about the bounce, a conversation."""
    prefix = _FORWARD_PREFIX.match(mail.subject)
    if prefix is None or not _BOUNCE_SUBJECT.match(mail.subject[prefix.end() :]):
        return False
    if _own_words(mail.reply_text):
        return False
    if _bounce_text(mail) or _FORWARDED_FROM.search(mail.body_text[:_TEXT_LOOKED_AT]):
        return True
    return any(
        a.content_type == "message/rfc822" and _on_its_face(parse_mail(a.data[:_INNER_BYTES]))
        for a in mail.attachments[:5]
    )


def _own_words(reply: str) -> bool:
    """Whether the text before the forwarded part holds a word."""
    for line in reply.splitlines():
        if _FORWARD_START.match(line) or _BOUNCE_TEXT.search(line):
            return False
        if any(ch.isalpha() for ch in line):
            return True
    return False
