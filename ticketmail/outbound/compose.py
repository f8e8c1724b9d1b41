"""Templates to outbound mail: rendering in the user's language and building the message."""

from __future__ import annotations

import base64
import email.quoprimime
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import jinja2

from ticketmail.errors import ConfigError
from ticketmail.models import CUSTOMER_STATUSES, SETTABLE_STATUSES

__all__ = [
    "AGENT_TEMPLATE_NAMES",
    "LANGUAGES",
    "TEMPLATE_NAMES",
    "WEB_TEMPLATE_NAMES",
    "OutboundFile",
    "OutboundMail",
    "Templates",
    "build_mail",
    "mail_context",
    "sample_context",
    "thread_references",
]

LANGUAGES = ("de", "en")
TEMPLATE_NAMES = (
    "ticket_created",
    "ticket_updated",
    "ticket_reopened",
    "status_changed",
    "agent_reply",
    "no_contract",
)
# The portal's mails about an account (SPEC 8.2): no ticket, a link to follow.
WEB_TEMPLATE_NAMES = (
    "account_confirm",
    "password_reset",
    "unknown_customer",
    "registration_approved",
    "registration_rejected",
)
# The desk's notifications to agents (SPEC 9).
AGENT_TEMPLATE_NAMES = (
    "agent_new_ticket",
    "agent_follow_up",
    "agent_assigned",
    "agent_customer_closed",
    "agent_customer_reopened",
    "agent_wait_over",
    "agent_registration",  # no ticket: `text` is the address, `customer` the institution
)
# Every variable any template may use; every render gets all of them (see mail_context).
_CONTEXT_KEYS = (
    "ticket",
    "tag",
    "subject",
    "name",
    "customer",
    "support_address",
    "offer_address",
    "team",
    "reopen_days",
    "previous",
    "status",
    "old_status",
    "note",
    "text",
    "agent_name",
    "attachments",
    "link",
    "ticket_url",
    "customer_number",
)


@dataclass(frozen=True, slots=True)
class OutboundFile:
    """A file sent along with a mail (an agent's attachment)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutboundMail:
    kind: str
    recipient: str
    sender: str
    message_id: str
    subject: str
    raw: bytes


def mail_context(
    *,
    ticket: int | None,
    tag: str,
    subject: str,
    name: str,
    customer: str,
    support_address: str,
    offer_address: str,
    team: str,
    reopen_days: int,
    previous: int | None = None,
    status: str = "",
    old_status: str = "",
    note: str = "",
    text: str = "",
    agent_name: str = "",
    attachments: Sequence[str] = (),
    link: str = "",
    ticket_url: str = "",
    customer_number: str = "",
) -> dict[str, Any]:
    """The variables of every template, each one always present (templates may use any)."""
    return {
        "ticket": ticket,
        "tag": tag,
        "subject": subject,
        "name": name,
        "customer": customer,
        "support_address": support_address,
        "offer_address": offer_address,
        "team": team,
        "reopen_days": reopen_days,
        "previous": previous,
        "status": status,
        "old_status": old_status,
        "note": note.strip(),
        "text": text.strip("\n").rstrip(),
        "agent_name": agent_name,
        "attachments": list(attachments),
        "link": link,
        "ticket_url": ticket_url,
        "customer_number": customer_number,
    }


def sample_context(**changes: Any) -> dict[str, Any]:
    """A context with every variable a template may use, for checks and tests."""
    values: dict[str, Any] = {
        "ticket": 100001,
        "tag": "[Ticket#100001]",
        "subject": "Drucker druckt nicht / Printer does not print",
        "name": "Anna Müller",
        "customer": "Gymnasium Musterstadt",
        "support_address": "support@stueber.de",
        "offer_address": "office@stueber.de",
        "team": "Stueber Support",
        "reopen_days": 14,
        "previous": 100000,
        "status": "answered",
        "old_status": "open",
        "note": "Der Treiber ist installiert. / The driver is installed.",
        "text": "Guten Tag Frau Müller,\n\nbitte starten Sie den Drucker neu.\n\nMax Berger",
        "agent_name": "Max Berger",
        "attachments": ["anleitung.pdf"],
        "link": "http://127.0.0.1:8080/register/confirm/abc",
        "ticket_url": "http://127.0.0.1:8080/tickets/100001",
        "customer_number": "10042",
    }
    values.update(changes)
    return mail_context(**values)


class Templates:
    """The mail templates of one directory: `<dir>/<lang>/<name>.txt.j2`.

    A rendered template starts with a `Subject: …` line, then an empty line, then the body.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - plain-text mail, never HTML
            keep_trailing_newline=True,
        )

    def render(self, name: str, /, *, lang: str, context: dict[str, Any]) -> tuple[str, str]:
        """(subject, body) of template `name` in `lang`; raises ConfigError when it is broken."""
        missing = [k for k in _CONTEXT_KEYS if k not in context]
        if missing:
            raise ValueError(f"template context lacks {missing}")
        path = f"{lang}/{name}.txt.j2"
        try:
            text = self._env.get_template(path).render(**context)
        except jinja2.TemplateNotFound:
            raise ConfigError(f"{self.directory / path}: template not found") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{self.directory / path}: {exc}") from None
        head, sep, body = text.partition("\n\n")
        if not sep or not head.startswith("Subject:"):
            raise ConfigError(
                f"{self.directory / path}: must start with 'Subject: …' and an empty line"
            )
        subject = " ".join(head.removeprefix("Subject:").split())
        return subject, body.strip("\n") + "\n"

    def check(self) -> None:
        """Render every template in every language; raise ConfigError on the first failure."""
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: templates directory not found")
        for lang in LANGUAGES:
            for name in (*TEMPLATE_NAMES, *WEB_TEMPLATE_NAMES, *AGENT_TEMPLATE_NAMES):
                self.render(name, lang=lang, context=sample_context())
            # The templates that speak of a status, with each one their readers see:
            # customers never see waiting (it is open to them); agents see every status a
            # ticket they hear of can have.
            for status in CUSTOMER_STATUSES:
                for name in ("status_changed", "agent_reply"):
                    self.render(name, lang=lang, context=sample_context(status=status))
            for status in SETTABLE_STATUSES:
                for name in ("agent_follow_up",):
                    self.render(name, lang=lang, context=sample_context(status=status))


def thread_references(root: str | None, parent: str | None) -> tuple[str, ...]:
    """The References of a ticket's mail: the ticket's first mail, then the one answered.

    Every mail of a ticket starts with the same root, so mail programs keep them in one
    thread. Nothing else from the mail answered is echoed: its References may name mails
    of other tickets, even of other institutions.
    """
    return tuple(dict.fromkeys(mid for mid in (root, parent) if mid))


def build_mail(
    *,
    kind: str,
    subject: str,
    body: str,
    sender_name: str,
    sender_address: str,
    recipient: str,
    recipient_name: str,
    message_id: str,
    in_reply_to: str | None,
    references: tuple[str, ...],
    auto_submitted: str | None,
    loop_token: str,
    lang: str,
    now: datetime,
    attachments: Sequence[OutboundFile] = (),
) -> OutboundMail:
    """A complete RFC 5322 message, non-ASCII headers encoded, CRLF line ends.

    `auto_submitted` None: a person wrote it (an agent's reply), so no Auto-Submitted header.
    A text-only mail between ASCII addresses (every confirmation and notice) is written
    directly, 30 times faster; one with attachments or very long non-ASCII names goes
    through `email`'s MIME machinery.
    """
    # Threading and loop guard: ASCII values, the same in both ways of writing the mail.
    trace = [("Date", format_datetime(now)), ("Message-ID", message_id)]
    if in_reply_to:
        trace.append(("In-Reply-To", in_reply_to))
    if references:
        trace.append(("References", " ".join(references)))
    if auto_submitted is not None:
        trace.append(("Auto-Submitted", auto_submitted))
    trace += [("X-Auto-Response-Suppress", "All"), ("X-Loop", loop_token)]
    direct = not attachments and sender_address.isascii() and recipient.isascii()
    if direct and _one_word_name(sender_name) and _one_word_name(recipient_name):
        headers = [
            ("From", _address("From", sender_name, sender_address)),
            ("To", _address("To", recipient_name, recipient)),
            ("Subject", _unstructured("Subject", subject)),
            *((name, _fold(name, value.split(" "))) for name, value in trace),
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("Content-Transfer-Encoding", "quoted-printable"),
            ("MIME-Version", "1.0"),
            ("Content-Language", lang),
        ]
        head = "".join(f"{name}: {value}{CRLF}" for name, value in headers)
        raw = (head + CRLF + _quoted_printable(body)).encode("ascii")
    else:
        raw = _mime_mail(
            subject=subject, body=body, sender=(sender_name, sender_address),
            recipient=(recipient_name, recipient), trace=trace, lang=lang,
            attachments=attachments,
        )  # fmt: skip
    return OutboundMail(
        kind=kind,
        recipient=recipient,
        sender=sender_address,
        message_id=message_id,
        subject=subject,
        raw=raw,
    )


def _mime_mail(
    *,
    subject: str,
    body: str,
    sender: tuple[str, str],
    recipient: tuple[str, str],
    trace: list[tuple[str, str]],
    lang: str,
    attachments: Sequence[OutboundFile],
) -> bytes:
    """The mail through `email`'s MIME policy: attachments, non-ASCII addresses, long names."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=sender[0], addr_spec=sender[1])
    try:
        msg["To"] = Address(display_name=recipient[0], addr_spec=recipient[1])
    except (ValueError, IndexError):
        msg["To"] = recipient[1]
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    for name, value in trace:
        msg[name] = value
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    for file in attachments:
        maintype, _, subtype = file.content_type.partition("/")
        if not subtype or maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.filename)
    msg["Content-Language"] = lang  # after the parts: a multipart keeps it at the top
    return msg.as_bytes()


# --- writing a text-only mail directly --------------------------------------------------------

CRLF = "\r\n"
MAX_LINE = 78
_ENCODED_WORD_BYTES = 39  # 52 base64 characters: "=?utf-8?b?" + 52 + "?=" is 64 columns
# A display name is written as one encoded word (72 columns at most): mail programs, and
# Python's own parser, put a space between adjacent encoded words of an address's name.
_NAME_BYTES = 45


def _one_word_name(display_name: str) -> bool:
    """True when the name is ASCII or fits into one encoded word."""
    return display_name.isascii() or len(" ".join(display_name.split()).encode()) <= _NAME_BYTES


def _encoded_words(text: str, *, limit: int = _ENCODED_WORD_BYTES) -> list[str]:
    """RFC 2047 base64 words of UTF-8 text, `limit` bytes each, never splitting a character."""
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > limit:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = b""
        chunk += data
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return words


def _phrase_tokens(text: str) -> list[str]:
    """Words of a header text: ASCII words as they are, each run of other words encoded.

    A run of encoded words carries the spaces inside it (RFC 2047 drops white space between
    adjacent encoded words); runs of spaces elsewhere are kept as empty words.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if word.isascii() and "=?" not in word and not (run and not word):
            if run:
                tokens += _encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _encoded_words(" ".join(run))
    return tokens


def _fold(name: str, tokens: list[str]) -> str:
    """Tokens joined by spaces, folded (CRLF + space) so that lines stay within 78 columns."""
    lines: list[str] = []
    line: str | None = None
    width = len(name) + 2
    for token in tokens:
        if line is None:
            line = token
        elif line and width + len(line) + 1 + len(token) > MAX_LINE:
            lines.append(line)
            line, width = token, 1
        else:
            line = f"{line} {token}"
    lines.append(line or "")
    return f"{CRLF} ".join(lines)


def _unstructured(name: str, text: str) -> str:
    """A one-line header text (CR, LF and tabs become spaces), encoded and folded."""
    flat = text.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip(" ")
    return _fold(name, _phrase_tokens(flat))


def _address(name: str, display_name: str, address: str) -> str:
    """`Name <addr>`: an ASCII name quoted where needed, any other as one encoded word."""
    phrase = " ".join(display_name.split())
    if phrase.isascii() and "=?" not in phrase:
        return _fold(name, formataddr((phrase, address)).split(" "))
    return _fold(name, [*_encoded_words(phrase, limit=_NAME_BYTES), f"<{address}>"])


def _quoted_printable(body: str) -> str:
    """The UTF-8 body, quoted-printable, CRLF line ends, lines within 76 columns."""
    text = "\n".join(body.splitlines())
    encoded = email.quoprimime.body_encode(
        text.encode("utf-8").decode("latin-1"), maxlinelen=76, eol=CRLF
    )
    return encoded if encoded.endswith(CRLF) else encoded + CRLF
