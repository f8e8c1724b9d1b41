"""Templates render in both languages, fail loudly, and become well-formed mail."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticketmail.config import default_templates_dir
from ticketmail.errors import ConfigError
from ticketmail.notify import (
    LANGUAGES,
    TEMPLATE_NAMES,
    Templates,
    build_mail,
    new_message_id,
    sample_context,
)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_renders_with_subject_and_body(name: str, lang: str) -> None:
    """Each shipped template renders in de and en to a one-line subject and a non-empty body."""
    subject, body = Templates(default_templates_dir()).render(
        name, lang=lang, context=sample_context()
    )
    assert subject
    assert "\n" not in subject
    assert "\r" not in subject
    assert body.strip()
    if name != "no_contract":
        assert "[Ticket#100001]" in subject


def test_german_templates_address_the_reader_formally() -> None:
    """German texts use the Sie-form, never du."""
    templates = Templates(default_templates_dir())
    for name in TEMPLATE_NAMES:
        _, body = templates.render(name, lang="de", context=sample_context())
        words = set(body.replace(",", " ").replace(".", " ").split())
        assert "Ihre" in words or "Ihr" in words or "Sie" in words
        assert not words & {"du", "dich", "dir", "dein", "deine"}


def test_missing_variable_fails_loudly(tmp_path: Path) -> None:
    """A template using an unknown variable raises ConfigError instead of mailing a blank."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "ticket_created.txt.j2").write_text(
        "Subject: {{ tag }}\n\nHello {{ nobody }}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="nobody"):
        Templates(tmp_path).render("ticket_created", lang="en", context=sample_context())


def test_template_without_subject_line_is_refused(tmp_path: Path) -> None:
    """A template must start with a Subject: line and an empty line."""
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "no_contract.txt.j2").write_text("Hallo\n\nText\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Subject"):
        Templates(tmp_path).render("no_contract", lang="de", context=sample_context())


def test_check_names_a_missing_template(tmp_path: Path) -> None:
    """check() reports the first template that is missing, with its path."""
    (tmp_path / "de").mkdir()
    with pytest.raises(ConfigError, match="ticket_created"):
        Templates(tmp_path).check()


def test_built_mail_has_loop_guard_headers_and_encoded_non_ascii() -> None:
    """Outbound mail carries threading and loop-guard headers; non-ASCII headers are encoded."""
    out = build_mail(
        kind="ticket_created",
        subject="[Ticket#100001] Drucker – Grüße\r\nBcc: evil@example.org",
        body="Grüße\n",
        sender_name="Stüber Support",
        sender_address="support@stueber.de",
        recipient="anna@schule.example",
        recipient_name="Anna Müller",
        message_id=new_message_id("stueber.de"),
        in_reply_to="<abc@schule.example>",
        references=("<older@schule.example>", "<abc@schule.example>"),
        auto_submitted="auto-replied",
        loop_token="support@stueber.de",
        lang="de",
        now=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    head = out.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    msg = email.message_from_bytes(out.raw, policy=email.policy.default)
    assert msg["Subject"] == "[Ticket#100001] Drucker – Grüße  Bcc: evil@example.org"
    assert msg["Bcc"] is None
    assert msg["In-Reply-To"] == "<abc@schule.example>"
    assert msg["References"] == "<older@schule.example> <abc@schule.example>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Loop"] == "support@stueber.de"
    assert msg["Message-ID"].endswith("@stueber.de>")
    assert msg["From"].addresses[0].display_name == "Stüber Support"
    assert msg.get_content().replace("\r\n", "\n") == "Grüße\n"
