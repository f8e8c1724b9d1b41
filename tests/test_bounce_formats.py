"""Bounces known by their form (carriers, plain-text MTAs, fml, forwarded ones, automatic
complaints) open no ticket and get no answer, even from a registered sender (SPEC 4.3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import Env, make_mail, read_rows, stored_blob
from desk_support import add_agent

from ticketmail.config import Config
from ticketmail.intake.process import route_policy
from ticketmail.intake.route import Classification, classify
from ticketmail.mail.bounce import read_bounce
from ticketmail.mail.parse import parse_mail

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
OURS = "<conf-100001.1@support.stueber.de>"
# Each reconstructed format and the signal that makes it a bounce.
FORMATS = {
    "au-kddi-mail-error.eml": "bounce-notice",
    "au-kddi-mail-error-raw.eml": "bounce-notice",
    "verizon-mmsc-undeliverable.eml": "bounce-notice",
    "opensmtpd-error.eml": "mailer-daemon-name",
    "fml-loop-alert.eml": "list-manager-error",
    "forwarded-bounce-attached.eml": "forwarded-bounce",
    "forwarded-bounce-inline.eml": "forwarded-bounce",
    "complaint-auto-replied.eml": "complaint",
}


def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _classify(raw: bytes, envelope_from: str = "relay@example.net") -> Classification:
    return classify(parse_mail(raw), envelope_from=envelope_from, policy=route_policy(Config()),
                    own_message_id=False)  # fmt: skip


def test_every_fixture_is_listed() -> None:
    """Every reconstructed bounce in tests/fixtures/bounces is checked here."""
    assert {p.name for p in FIXTURES.glob("*.eml")} == set(FORMATS)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_format_is_a_bounce(name: str) -> None:
    """Each format is a bounce to the loop guard, by the signal its form gives."""
    raw = _raw(name)
    cls = _classify(raw, envelope_from=parse_mail(raw).from_addr)
    assert cls.bounce, cls.reasons
    assert FORMATS[name] in cls.reasons


@pytest.mark.parametrize(
    "name",
    ["au-kddi-mail-error.eml", "verizon-mmsc-undeliverable.eml", "opensmtpd-error.eml",
     "fml-loop-alert.eml", "complaint-auto-replied.eml"],
)  # fmt: skip
def test_format_names_our_mail(name: str) -> None:
    """A carrier's, MTA's, fml's or complaint desk's notice names the confirmation it reports."""
    raw = _raw(name)
    assert OURS in read_bounce(raw, parse_mail(raw)).message_ids


def test_automatic_complaint_is_read_as_a_complaint() -> None:
    """An Auto-Submitted complaint counts as a complaint: a permanent failure of our mail."""
    raw = _raw("complaint-auto-replied.eml")
    report = read_bounce(raw, parse_mail(raw))
    assert report.reason.startswith("complaint")
    assert report.permanent


def test_opensmtpd_status_is_read_from_its_text() -> None:
    """OpenSMTPD's plain-text notice gives its 5.1.1 status."""
    raw = _raw("opensmtpd-error.eml")
    report = read_bounce(raw, parse_mail(raw))
    assert (report.status, report.permanent) == ("5.1.1", True)


# --- the rules in general, not only for the fixtures ---------------------------------------------


def _mail(sender: str, subject: str, body: str = "Hallo,\n\nder Drucker geht nicht.\n",
          headers: str = "") -> bytes:  # fmt: skip
    return (
        f"From: {sender}\nTo: support@stueber.de\nSubject: {subject}\n{headers}"
        f"Message-ID: <m1@example.org>\n\n{body}"
    ).encode()


@pytest.mark.parametrize(
    "sender",
    ["Mailer Daemon <smtpd@mx.example.org>", '"MAILER-DAEMON" <root@mx.example.org>',
     "Mail Delivery System <exim@mx.example.org>", "mailer_daemon <x@example.org>",
     "Mail Delivery Subsystem <anything@example.org>"],
)  # fmt: skip
def test_delivery_software_display_name_at_any_local_part(sender: str) -> None:
    """A Mailer Daemon / Mail Delivery display name is delivery software, whatever the address."""
    cls = _classify(_mail(sender, "Hallo"))
    assert cls.bounce
    assert "mailer-daemon-name" in cls.reasons


@pytest.mark.parametrize(
    "sender", ["Daemon Tools Support <help@example.org>", "Anna Mailer <anna@schule.example>"]
)
def test_person_with_similar_display_name_is_no_bounce(sender: str) -> None:
    """A name that only contains such a word is a person."""
    assert not _classify(_mail(sender, "Hallo")).automatic


@pytest.mark.parametrize(
    ("sender", "subject"),
    [
        ("sysadmin@carrier.example", "Undeliverable Message"),
        ("root@mx.example.org", "Returned mail: see transcript for details"),
        ("noreply@carrier.example.jp", "メールエラー通知"),
        ("no-reply@carrier.example", "Mail delivery failed: returning message to sender"),
        ("nobody@mx.example.org", "failure notice"),
        ("mmsc@carrier.example", "Nicht zustellbar: Drucker"),
    ],
)
def test_bounce_subject_from_a_machine_mailbox_is_a_bounce(sender: str, subject: str) -> None:
    """A delivery notice's subject from sysadmin@, root@, no-reply@ ... is a bounce."""
    cls = _classify(_mail(sender, subject, "Your message could not be processed.\n"))
    assert cls.bounce, cls.reasons
    assert "bounce-notice" in cls.reasons


def test_sysadmin_writing_a_question_is_a_person() -> None:
    """sysadmin@ of a school asking a question opens a normal conversation (only a bounce's
    subject makes such a mailbox's mail a bounce)."""
    cls = _classify(_mail("sysadmin@schule.example", "Drucker im Raum 12"))
    assert not cls.automatic


def test_bounce_subject_from_a_person_needs_the_bounce_inside() -> None:
    """A person's subject that reads like a bounce is a bounce only with a bounce's text."""
    plain = _mail("anna@schule.example", "Undeliverable message", "Meine Mail kam zurück.\n")
    assert not _classify(plain).automatic
    report = _mail(
        "anna@schule.example",
        "Undeliverable message",
        "This is the mail system at host mx.schule.example.\n\nI'm sorry to have to inform you",
    )
    assert _classify(report).bounce


def test_forwarded_bounce_with_own_words_stays_a_conversation() -> None:
    """A person who forwards a bounce and asks about it writes a normal mail."""
    raw = _raw("forwarded-bounce-inline.eml").replace(
        b"\n\n\n\n-------- Forwarded", b"\n\nHallo, was bedeutet das?\n\n-------- Forwarded", 1
    )
    cls = _classify(raw)
    assert not cls.bounce
    assert not cls.automatic


_SENDMAIL_TEXT = (
    "The original message was received at Sun, 22 Nov 2026 09:09:58 +0100\n"
    "   ----- The following addresses had permanent fatal errors -----\n<eltern@x.example>\n"
)


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("[Fwd: Returned mail: see transcript for details]",  # Netscape, old Mozilla
         "-------- Original Message --------\nSubject: Returned mail\n"
         "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\n\n" + _SENDMAIL_TEXT),
        ("FW: Undeliverable: Elternabend",  # Outlook: [mailto:...], no bounce phrase
         "\n-----Original Message-----\nFrom: Mail Delivery System "
         "[mailto:MAILER-DAEMON@mx.example]\nSent: Sunday\nSubject: Undeliverable\n\nsorry\n"),
        ("WG: Unzustellbar: Elternabend",  # iPhone: a mobile signature, the bounce quoted
         "\n\nVon meinem iPhone gesendet\n\nBegin forwarded message:\n\n"
         "> From: postmaster@mx.example\n> Subject: Unzustellbar\n"),
        ("Fwd: Returned mail: see transcript for details", _SENDMAIL_TEXT),  # no separator
    ],
)  # fmt: skip
def test_forwarded_bounce_in_other_clients_forms(subject: str, body: str) -> None:
    """A bounce forwarded unchanged is recognised in other clients' forward forms too."""
    cls = _classify(_mail("anna@schule.example", subject, body))
    assert cls.bounce, cls.reasons
    assert "forwarded-bounce" in cls.reasons


def test_forwarded_mail_that_is_no_bounce_is_a_conversation() -> None:
    """A forwarded mail with a bounce-like subject but a person's mail inside is no bounce."""
    raw = _mail(
        "anna@schule.example",
        "Fwd: Returned mail: see transcript for details",
        "\n-------- Forwarded Message --------\nFrom: Ben <ben@schule.example>\n\n"
        "Kannst du das bitte an den Support schicken?\n",
    )
    assert not _classify(raw).automatic


def test_fml_loop_alert_known_by_its_headers_from_any_sender() -> None:
    """fml's Loop Alert is a bounce also from a non-list address when fml's headers say fml."""
    raw = _raw("fml-loop-alert.eml").replace(
        b"From: elena-admin@fml.example.org", b"From: postfix@fml.example.org"
    )
    cls = _classify(raw)
    assert cls.bounce
    assert "list-manager-error" in cls.reasons


def test_fml_loop_alert_with_list_tag_known_by_its_message_id() -> None:
    """fml's Loop Alert behind the list's tag, from a plain address, known by fml's Message-ID."""
    raw = _mail(
        "elena@fml.example.org",
        "[elena:01234] Loop Alert: dup'ed message-id received",
        "Loop Alert: dup'ed message-id received\n",
    ).replace(b"<m1@example.org>", b"<202611221900.FMLAAB01234.elena@fml.example.org>")
    cls = _classify(raw)
    assert cls.bounce
    assert "list-manager-error" in cls.reasons


@pytest.mark.parametrize("subject", ["Loop Alert: Switch im Keller", "Security alert: Phishing"])
def test_alert_subject_from_a_person_is_no_bounce(subject: str) -> None:
    """A person's own "Loop alert" or "Security alert", headers of a mail pasted, is a
    conversation (fml's notices are known by fml's marks)."""
    body = "Hallo,\ndiese Mail kreist:\n\nReceived: from mx.example\nMessage-ID: <x@y>\n"
    assert not _classify(_mail("anna@schule.example", subject, body)).automatic


@pytest.mark.parametrize(
    ("sender", "subject", "headers"),
    [
        ("abuse@provider.example", "Report", "Auto-Submitted: auto-generated\n"),
        ("it@provider.example", "Abuse report: mail from 192.0.2.25",
         "Auto-Submitted: auto-replied\n"),
        ("desk@provider.example", "Beschwerde über unerwünschte Werbung",
         "Auto-Submitted: auto-replied\n"),
        ("1234567@reports.spamcop.example", "[SpamCop (http://spamcop.example) id:77]Drucker",
         "Auto-Submitted: auto-generated\n"),
    ],
)  # fmt: skip
def test_automatic_complaint_is_a_bounce(sender: str, subject: str, headers: str) -> None:
    """A complaint marked Auto-Submitted is a complaint report, never a conversation."""
    cls = _classify(_mail(sender, subject, "A recipient reported your message.\n", headers))
    assert cls.bounce
    assert "complaint" in cls.reasons


def test_automatic_complaint_with_neutral_subject_quoting_the_mail() -> None:
    """An Auto-Submitted report that calls itself a complaint in its text beside the quoted
    headers of the reported mail is a complaint."""
    body = (
        "A user of our service has filed a complaint about the message below.\n\n"
        "Received: from mail.stueber.de\nMessage-ID: <conf-100001.1@support.stueber.de>\n"
    )
    raw = _mail("postmaster-desk@provider.example", "Notification", body,
                "Auto-Submitted: auto-replied\n")  # fmt: skip
    assert "complaint" in _classify(raw).reasons


def test_arf_fields_written_as_text_are_a_feedback_report() -> None:
    """An ARF report whose fields stand in the text (no feedback-report part) is a complaint."""
    body = (
        "This is an email abuse report.\n\nFeedback-Type: abuse\nUser-Agent: ReportGen/1.0\n"
        "Version: 1\nOriginal-Rcpt-To: <anna@schule.example>\n"
    )
    raw = _mail("reports@provider.example", "Abuse report", body)
    cls = _classify(raw)
    assert cls.bounce
    assert "feedback-report" in cls.reasons
    assert read_bounce(raw, parse_mail(raw)).recipients == ("anna@schule.example",)


def test_complaint_words_without_auto_submitted_are_a_person() -> None:
    """A person's complaint (no Auto-Submitted) is a conversation, a ticket the team answers."""
    assert not _classify(_mail("anna@schule.example", "Beschwerde: Drucker")).automatic


def test_automatic_mail_that_is_no_complaint_stays_automatic() -> None:
    """An out-of-office reply (Auto-Submitted, no complaint) stays automatic, no bounce."""
    cls = _classify(
        _mail("anna@schule.example", "Abwesenheit", "Ich bin nicht im Haus.\n",
              "Auto-Submitted: auto-replied\n")
    )  # fmt: skip
    assert cls.automatic
    assert not cls.bounce


# --- through the real daemon ---------------------------------------------------------------------


def _last_message(env: Env) -> tuple[str, str, str, str]:
    row = read_rows(
        env.data_dir,
        "SELECT header_from, outcome, reason, raw_sha256 FROM messages ORDER BY id DESC LIMIT 1",
    )[0]
    return (str(row[0]), str(row[1]), str(row[2]), str(row[3]))


async def _stored_flagged_and_silent(env: Env, raw: bytes, sender: str) -> None:
    """The mail was accepted, kept byte for byte as a bounce, opened nothing, sent nothing."""
    code, text = await env.send(raw, mail_from=sender)
    assert (code, text) == (250, "2.0.0 Ok")
    header_from, outcome, reason, sha = _last_message(env)
    assert (header_from, outcome, reason) == (sender, "discarded", "bounce")
    stored = stored_blob(env.data_dir, sha) or b""
    assert hashlib.sha256(stored).hexdigest() == sha
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("outbox", "list") == []
    assert env.sink is not None
    assert env.sink.received == []


@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_format_from_registered_sender_opens_nothing_sends_nothing(
    env: Env, name: str
) -> None:
    """Each format, its sender registered and its envelope sender not empty: stored as a
    bounce, no ticket, nothing queued or sent."""
    raw = _raw(name)
    sender = parse_mail(raw).from_addr
    await env.user(sender, "10042")  # anna is registered already; `user` adds the others
    await _stored_flagged_and_silent(env, raw, sender)


async def test_forwarded_bounce_from_an_agent_is_kept_silently(env: Env) -> None:
    """A bounce an agent forwards to the support address is a bounce too, not a refused
    agent's mail (which would be answered 550)."""
    await add_agent(env)
    raw = _raw("forwarded-bounce-attached.eml").replace(
        b"Anna Schmidt <anna@schule.example>", b"Max Berger <max@stueber.de>"
    )
    await _stored_flagged_and_silent(env, raw, "max@stueber.de")


async def test_same_sender_writing_a_question_gets_a_ticket(env: Env) -> None:
    """The registered sender's own question still opens a ticket and is confirmed (the
    recognition keys on the bounce, not on the sender)."""
    assert env.sink is not None
    code, text = await env.send(make_mail("anna@schule.example", "Drucker im Raum 12"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    await env.sink.wait_for(1)
