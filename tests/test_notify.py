"""Templates render in both languages, fail loudly, and become well-formed mail."""

from __future__ import annotations

import email
import email.policy
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketmail.config import default_templates_dir
from ticketmail.errors import ConfigError
from ticketmail.mail.msgid import MessageIds
from ticketmail.models import CUSTOMER_STATUSES
from ticketmail.outbound.compose import (
    AGENT_TEMPLATE_NAMES,
    LANGUAGES,
    TEMPLATE_NAMES,
    OutboundFile,
    Templates,
    build_mail,
    sample_context,
    thread_references,
)

IDS = MessageIds("stueber.de", b"test-secret-0123456789abcdef")


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


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", [n for n in AGENT_TEMPLATE_NAMES if n != "agent_registration"])
def test_every_agent_notification_renders_with_tag_subject_and_link(name: str, lang: str) -> None:
    """Each notification to agents about a ticket (new ticket, follow-up, assignment, a
    customer's close and reopen) renders in de and en with the tag in a one-line subject and
    the desk link (a registration's, about no ticket: tests/test_desk_confirm.py)."""
    context = sample_context()
    context.update(link="http://127.0.0.1:8080/desk/tickets/100001", agent_name="Max Berger")
    subject, body = Templates(default_templates_dir()).render(name, lang=lang, context=context)
    assert subject.startswith("[Ticket#100001] ")
    assert "\n" not in subject
    assert "http://127.0.0.1:8080/desk/tickets/100001" in body
    assert "Max Berger" in body


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
        message_id=IDS.new(100001),
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


# --- the support team's templates ---------------------------------------------------------------

LABELS = {
    "de": {"new": "neu", "open": "in Bearbeitung", "answered": "beantwortet",
           "closed": "abgeschlossen"},
    "en": {"new": "new", "open": "in progress", "answered": "answered", "closed": "closed"},
}  # fmt: skip


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("status", CUSTOMER_STATUSES)
def test_status_changed_names_the_new_status_and_carries_the_note(lang: str, status: str) -> None:
    """status_changed names old and new status in the reader's language, with the agent's note."""
    subject, body = Templates(default_templates_dir()).render(
        "status_changed", lang=lang, context=sample_context(status=status, old_status="open")
    )
    assert LABELS[lang][status] in subject
    assert "[Ticket#100001]" in subject
    assert f"{LABELS[lang][status]} (" in body
    assert LABELS[lang]["open"] in body
    assert "Der Treiber ist installiert." in body
    quiet = Templates(default_templates_dir()).render(
        "status_changed", lang=lang, context=sample_context(status=status, note="")
    )[1]
    assert "Anmerkung" not in quiet
    assert "A note from" not in quiet


@pytest.mark.parametrize("lang", LANGUAGES)
def test_agent_reply_is_the_agents_text_then_a_signed_footer(lang: str) -> None:
    """agent_reply: the agent's text unchanged first, the attachments named, then the footer."""
    context = sample_context(status="closed", text="Hallo,\n\nerledigt.\n\n", agent_name="Max")
    subject, body = Templates(default_templates_dir()).render("agent_reply", lang=lang,
                                                              context=context)  # fmt: skip
    assert subject == "[Ticket#100001] Drucker druckt nicht / Printer does not print"
    names = "Anlagen" if lang == "de" else "Attachments"
    assert body.startswith(f"Hallo,\n\nerledigt.\n\n{names}: anleitung.pdf\n\n-- \nMax, Stueber")
    closing = "damit abgeschlossen" if lang == "de" else "We have closed the ticket"
    assert closing in body


@pytest.mark.parametrize("lang", LANGUAGES)
def test_new_ticket_after_a_long_closed_one_names_it(lang: str) -> None:
    """ticket_created mentions the earlier closed ticket only when there is one."""
    templates = Templates(default_templates_dir())
    _, named = templates.render("ticket_created", lang=lang, context=sample_context())
    _, plain = templates.render("ticket_created", lang=lang, context=sample_context(previous=None))
    assert "100000" in named
    assert "100000" not in plain


def test_check_renders_status_templates_with_every_status(tmp_path: Path) -> None:
    """check() catches an admin's template that breaks for one status only."""
    copy = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), copy)
    path = copy / "en" / "status_changed.txt.j2"
    path.write_text(
        path.read_text(encoding="utf-8").replace('"new": "new", ', ""), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="status_changed"):
        Templates(copy).check()


def test_mail_with_attachments_and_written_by_a_person() -> None:
    """An agent's mail: multipart with the files, no Auto-Submitted, loop guard kept."""
    out = build_mail(
        kind="agent_reply",
        subject="[Ticket#100001] Drucker",
        body="Anbei.\n",
        sender_name="Stueber Support",
        sender_address="support@stueber.de",
        recipient="anna@schule.example",
        recipient_name="Anna",
        message_id=IDS.new(100001),
        in_reply_to="<t1@schule.example>",
        references=thread_references("<t1@schule.example>", "<t1@schule.example>"),
        auto_submitted=None,
        loop_token="support@stueber.de",
        lang="de",
        now=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        attachments=(
            OutboundFile("Prüfbericht.pdf", "application/pdf", b"%PDF"),
            OutboundFile("odd", "multipart/mixed", b"x"),
        ),
    )
    msg = email.message_from_bytes(out.raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Auto-Submitted"] is None
    assert msg["X-Loop"] == "support@stueber.de"
    assert msg["Content-Language"] == "de"
    assert msg["References"] == "<t1@schule.example>"
    files = [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
             for p in msg.iter_attachments()]  # fmt: skip
    assert files == [
        ("Prüfbericht.pdf", "application/pdf", b"%PDF"),
        ("odd", "application/octet-stream", b"x"),
    ]
    assert out.raw.split(b"\r\n\r\n", 1)[0].isascii()


def test_thread_references_root_first_answered_last() -> None:
    """References: the ticket's first mail, then the mail answered, never twice, never empty."""
    assert thread_references("<a@x>", "<b@x>") == ("<a@x>", "<b@x>")
    assert thread_references("<a@x>", "<a@x>") == ("<a@x>",)
    assert thread_references(None, "<b@x>") == ("<b@x>",)
    assert thread_references(None, None) == ()


async def test_admin_templates_directory_overrides_the_shipped_ones(
    env_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """templates.dir pointing at an admin's copy: ticketmail's mails use that copy."""
    copy = tmp_path / "own-templates"
    shutil.copytree(default_templates_dir(), copy)
    path = copy / "de" / "ticket_created.txt.j2"
    path.write_text(
        path.read_text(encoding="utf-8").replace("Ihr Support-Team", "Ihr Stüber-Team"),
        encoding="utf-8",
    )
    env = await env_factory(sink, templates={"dir": str(copy)})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user("anna@schule.example", "10042", lang="de")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "anna@schule.example", "support@stueber.de", "Drucker"
    msg.set_content("Hallo\n")
    assert await env.send(msg) == (250, "2.0.0 Ok: ticket 100001")
    [received] = await sink.wait_for(1)
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert "Ihr Stüber-Team" in text


_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85")
_TEXT = st.text(_CHARS, max_size=160)
# Names that fit into one encoded word; longer non-ASCII names take email's own path.
_NAME = st.text(_CHARS, max_size=30).filter(
    lambda n: n.isascii() or len(" ".join(n.split()).encode()) <= 45
)


@settings(max_examples=300, deadline=None)
@given(subject=_TEXT, name=_NAME, body=_TEXT)
def test_text_mail_written_directly_reads_back_as_written(
    subject: str, name: str, body: str
) -> None:
    """A confirmation built without email's MIME machinery parses back to its exact texts."""
    built = build_mail(
        kind="ticket_created", subject=subject, body=body, sender_name=name,
        sender_address="support@stueber.de", recipient="anna@schule.example",
        recipient_name=name, message_id="<tm.1@stueber.de>", in_reply_to="<a@b>",
        references=("<a@b>", "<c@d>"), auto_submitted="auto-replied",
        loop_token="support@stueber.de", lang="de", now=datetime(2026, 11, 22, tzinfo=UTC),
    )  # fmt: skip
    assert built.raw.isascii()
    lines = built.raw.split(b"\r\n")
    assert all(len(line) <= 78 for line in lines), max(lines, key=len)
    assert b"\n" not in built.raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(built.raw, policy=email.policy.default)
    assert not msg.defects
    flat = subject.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip(" ")
    assert str(msg["Subject"]) == flat
    for field, address in (("From", "support@stueber.de"), ("To", "anna@schule.example")):
        (parsed,) = msg[field].addresses
        assert (parsed.display_name, parsed.addr_spec) == (" ".join(name.split()), address)
    assert msg["References"] == "<a@b> <c@d>"
    content = msg.get_content().replace("\r\n", "\n")
    assert content == ("".join(f"{line}\n" for line in body.splitlines()) or "\n")


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_lines_fit_78_columns(name: str, lang: str) -> None:
    """With typical values (6-digit ticket, tag, institution) no rendered line passes 78."""
    templates = Templates(default_templates_dir())
    for status in CUSTOMER_STATUSES:  # what customers read (waiting is open to them)
        _, body = templates.render(name, lang=lang, context=sample_context(status=status))
        long = [line for line in body.splitlines() if len(line) > 78]
        assert not long, long
