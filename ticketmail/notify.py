"""Templates to outbound mail: rendering in the user's language and building the message."""

from __future__ import annotations

import secrets
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

__all__ = [
    "LANGUAGES",
    "TEMPLATE_NAMES",
    "OutboundMail",
    "Templates",
    "build_mail",
    "new_message_id",
    "sample_context",
]

LANGUAGES = ("de", "en")
TEMPLATE_NAMES = ("ticket_created", "ticket_updated", "no_contract")
_CONTEXT_KEYS = (
    "ticket",
    "tag",
    "subject",
    "name",
    "customer",
    "support_address",
    "offer_address",
)


@dataclass(frozen=True, slots=True)
class OutboundMail:
    kind: str
    recipient: str
    sender: str
    message_id: str
    subject: str
    raw: bytes


def sample_context() -> dict[str, Any]:
    """A context with every variable a template may use, for checks and tests."""
    return {
        "ticket": 100001,
        "tag": "[Ticket#100001]",
        "subject": "Drucker druckt nicht / Printer does not print",
        "name": "Anna Müller",
        "customer": "Gymnasium Musterstadt",
        "support_address": "support@stueber.de",
        "offer_address": "office@stueber.de",
    }


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


def new_message_id(domain: str) -> str:
    return f"<tm.{secrets.token_hex(12)}@{domain}>"


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
    auto_submitted: str,
    loop_token: str,
    lang: str,
    now: datetime,
) -> OutboundMail:
    """A complete RFC 5322 message, non-ASCII headers encoded, CRLF line ends."""
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
    msg["Auto-Submitted"] = auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = loop_token
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = lang
    return OutboundMail(
        kind=kind,
        recipient=recipient,
        sender=sender_address,
        message_id=message_id,
        subject=subject,
        raw=msg.as_bytes(),
    )
