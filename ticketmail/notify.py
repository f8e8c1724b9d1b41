"""Templates to outbound mail: rendering in the user's language and building the message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from .errors import ConfigError
from .models import STATUSES

__all__ = [
    "LANGUAGES",
    "TEMPLATE_NAMES",
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
            for name in TEMPLATE_NAMES:
                self.render(name, lang=lang, context=sample_context())
            for status in STATUSES:  # the templates that speak of a status, with each one
                for name in ("status_changed", "agent_reply"):
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
    """
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=sender_name, addr_spec=sender_address)
    try:
        msg["To"] = Address(display_name=recipient_name, addr_spec=recipient)
    except (ValueError, IndexError):
        msg["To"] = recipient
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    if auto_submitted is not None:
        msg["Auto-Submitted"] = auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = loop_token
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    for file in attachments:
        maintype, _, subtype = file.content_type.partition("/")
        if not subtype or maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.filename)
    msg["Content-Language"] = lang  # after the parts: a multipart keeps it at the top
    return OutboundMail(
        kind=kind,
        recipient=recipient,
        sender=sender_address,
        message_id=message_id,
        subject=subject,
        raw=msg.as_bytes(),
    )
