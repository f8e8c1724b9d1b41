"""Reports that are no conversation: complaints, SES notifications, carrier and MTA text
bounces, list managers' answers and role senders are recognised, never answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SUPPORT, Env, make_mail, read_rows

from ticketmail.config import Config
from ticketmail.intake.process import route_policy
from ticketmail.intake.route import Classification, classify
from ticketmail.mail.bounce import read_bounce
from ticketmail.mail.parse import parse_mail

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
OURS = "<conf-100001.1@support.stueber.de>"
ORIGINAL = (
    f"From: Stueber Support <{SUPPORT}>\nTo: anna@schule.example\n"
    f"Subject: [Ticket#100001] Drucker\nMessage-ID: {OURS}\n\nIhr Ticket 100001 ...\n"
)


def _classify(raw: bytes, envelope_from: str = "relay@example.net") -> Classification:
    mail = parse_mail(raw)
    return classify(mail, envelope_from=envelope_from, policy=route_policy(Config()),
                    own_message_id=False)  # fmt: skip


def mixed(head: str, *parts: bytes, subtype: str = "mixed", params: str = "") -> bytes:
    """A multipart mail of ready-made parts (headers, blank line, body) under the given head."""
    out = [
        head.encode() + b"MIME-Version: 1.0\n",
        f'Content-Type: multipart/{subtype};{params} boundary="R"\n\n'.encode(),
    ]
    out += [b"--R\n" + p + b"\n" for p in parts]
    return b"".join(out) + b"--R--\n"


def arf() -> bytes:
    """RFC 5965's example feedback report, about one of our confirmations."""
    return mixed(
        "From: <abusedesk@mailprovider.example>\nTo: support@stueber.de\n"
        "Subject: FW: Earn money\nMessage-ID: <arf-1@mailprovider.example>\n",
        b"Content-Type: text/plain\n\nThis is an email abuse report for an email message "
        b"received from IP 192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\n",
        b"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        b"User-Agent: SomeGenerator/1.0\nVersion: 1\nOriginal-Mail-From: <support@stueber.de>\n"
        b"Original-Rcpt-To: <anna@schule.example>\nArrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\n",
        b"Content-Type: message/rfc822\n\n" + ORIGINAL.encode(),
        subtype="report",
        params=" report-type=feedback-report;",
    )


def old_complaint(sender: str) -> bytes:
    """A provider's pre-ARF complaint: a short text and the original as message/rfc822."""
    return mixed(
        f"From: {sender}\nTo: support@stueber.de\nSubject: Client TOS Notification\n",
        b"Content-Type: text/plain\n\nThis is a copy of a message a user reported as spam.\n",
        b"Content-Type: message/rfc822\n\n" + ORIGINAL.encode(),
    )


def ses(kind: str, *, envelope: bool = False, bounce_type: str = "Permanent") -> bytes:
    """An Amazon SES event about our mail as SNS mails it (email, or email-json)."""
    event: dict[str, object] = {
        "notificationType": kind,
        "mail": {
            "timestamp": "2026-11-22T10:00:00.000Z",
            "source": SUPPORT,
            "messageId": "0100018a-ses-id",
            "destination": ["anna@schule.example"],
            "headers": [{"name": "Message-ID", "value": OURS}],
            "commonHeaders": {"messageId": OURS, "subject": "[Ticket#100001] Drucker"},
        },
    }
    if kind == "Bounce":
        event["bounce"] = {
            "bounceType": bounce_type,
            "bouncedRecipients": [
                {
                    "emailAddress": "anna@schule.example",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        }
    if kind == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": "anna@schule.example"}]}
    body = json.dumps(event)
    if envelope:
        body = json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": body})
    return (
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\nTo: support@stueber.de\n"
        "Subject: AWS Notification Message\nMessage-ID: <sns-1@email.amazonses.com>\n"
        "x-amz-sns-message-id: 3f0b-sns\nx-amz-sns-topic-arn: arn:aws:sns:eu-1:1:ses\n"
        "Content-Type: text/plain; charset=UTF-8\n\n" + body + "\n\n--\nIf you wish to stop "
        "receiving notifications from this topic, please click below to unsubscribe\n"
    ).encode()


def carrier(sender: str, subject: bytes, notice: str, *, label: bool) -> bytes:
    """A Japanese carrier's short ISO-2022-JP error notice with our mail attached."""
    ctype = b"text/plain; charset=ISO-2022-JP" if label else b"text/plain"
    return mixed(
        f"From: {sender}\nTo: support@stueber.de\nMessage-ID: <c-1@mta.example.jp>\n",
        b"Content-Type: " + ctype + b"\n\n" + notice.encode("iso2022_jp") + b"\n",
        b"Content-Type: message/rfc822\n\n" + ORIGINAL.encode(),
    ).replace(b"MIME-Version", b"Subject: " + subject + b"\nMIME-Version", 1)


TEXT_BOUNCES = {
    "au": carrier(
        "postmaster@ezweb.ne.jp",
        b"Mail System Error - Returned Mail",
        "次のアドレスへのメールは送信できませんでした。\nanna@ezweb.ne.jp\n宛先不明です。",
        label=True,
    ),
    "docomo": carrier(
        "Mail Delivery Subsystem <MAILER-DAEMON@docomo.ne.jp>",
        b"Returned mail: see transcript",
        "このメールは送信できませんでした。宛先のアドレスをご確認ください。",
        label=False,
    ),
    "softbank": carrier(
        "Postmaster@softbank.ne.jp",
        b"Undeliverable Message",
        "以下のアドレスへの配信に失敗しました。",
        label=False,
    ),
    "verizon": (
        "From: post_master@vtext.com\nTo: support@stueber.de\nSubject: Message Delivery Failure\n\n"
        "Error: 550 5.1.1 Invalid recipient: 5551234567@vtext.com\n\n"
        "----- Original message -----\n" + ORIGINAL
    ).encode(),
    "postoffice": (
        "From: postoffice@mail.example.net\nTo: support@stueber.de\nSubject: Returned mail\n\n"
        "Your message could not be delivered.\n\n" + ORIGINAL
    ).encode(),
    "james": (
        "From: postmaster@james.example.org\nTo: support@stueber.de\n"
        "Subject: [BOUNCE]\n\nHi. This is the James mail server at james.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "anna@schule.example\n550 5.1.1 User unknown\n\n" + ORIGINAL
    ).encode(),
    "qmail": (
        "From: MAILER-DAEMON@mx.schule.example\nTo: support@stueber.de\n"
        "Subject: failure notice\n\nHi. This is the qmail-send program at mx.schule.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<anna@schule.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n" + ORIGINAL
    ).encode(),
    "sendmail": (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.schule.example>\n"
        "To: support@stueber.de\nSubject: Returned mail: User unknown\n\n"
        "The original message was received at Sun, 22 Nov 2026 10:00:00 +0100\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        "<anna@schule.example>\n   ----- Transcript of session follows -----\n"
        "... while talking to mx.schule.example.:\n>>> RCPT To:<anna@schule.example>\n"
        "<<< 550 5.1.1 <anna@schule.example>... User unknown\n"
        "550 5.1.1 <anna@schule.example>... User unknown\n\n"
        "   ----- Original message follows -----\n" + ORIGINAL
    ).encode(),
    "sendmail-mail-daemon": (
        "From: mail_daemon@old.example.com\nTo: support@stueber.de\n"
        "Subject: Returned mail: Host unknown\n\n   ----- Unsent message follows -----\n" + ORIGINAL
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(TEXT_BOUNCES))
def test_text_bounces_are_bounces_that_name_our_mail(name: str) -> None:
    """Carrier, post_master, James, qmail and sendmail notices are bounces naming our mail."""
    raw = TEXT_BOUNCES[name]
    cls = _classify(raw)
    assert cls.bounce, cls.reasons
    assert read_bounce(raw, parse_mail(raw)).message_ids == (OURS,)


def test_carrier_notice_text_is_read_from_iso2022jp() -> None:
    """A carrier's ISO-2022-JP notice, labelled or not, is stored as readable Japanese."""
    for name in ("au", "softbank"):
        assert (
            "送信" in parse_mail(TEXT_BOUNCES[name]).body_text
            or "配信" in parse_mail(TEXT_BOUNCES[name]).body_text
        )


def test_qmail_and_sendmail_status_is_permanent() -> None:
    """qmail's (#5.1.1) and sendmail's 550 5.1.1 make a permanent bounce."""
    for name in ("qmail", "sendmail", "james", "verizon"):
        raw = TEXT_BOUNCES[name]
        report = read_bounce(raw, parse_mail(raw))
        assert report.permanent, name
        assert report.status == "5.1.1", name


def test_arf_is_a_complaint_that_names_our_mail() -> None:
    """An ARF report is a bounce-class report naming our mail and the complaining address."""
    cls = _classify(arf())
    assert cls.bounce
    assert "feedback-report" in cls.reasons
    report = read_bounce(arf(), parse_mail(arf()))
    assert report.message_ids == (OURS,)
    assert report.recipients == ("anna@schule.example",)
    assert report.reason == "complaint: abuse"
    assert report.permanent
    assert report.failed


@pytest.mark.parametrize("sender", ["staff@hotmail.com", "scomp@aol.net", "abuse@provider.example"])
def test_old_complaint_formats_are_complaints(sender: str) -> None:
    """A staff or abuse address's message/rfc822 complaint is a bounce-class report."""
    raw = old_complaint(sender)
    cls = _classify(raw)
    assert cls.bounce
    assert "complaint" in cls.reasons
    assert read_bounce(raw, parse_mail(raw)).message_ids == (OURS,)


def test_abuse_address_writing_without_enclosed_mail_is_no_complaint() -> None:
    """An abuse desk's own words without an enclosed mail are no complaint report."""
    raw = b"From: abuse@provider.example\nTo: support@stueber.de\nSubject: Frage\n\nHallo\n"
    assert not _classify(raw).bounce


@pytest.mark.parametrize("envelope", [False, True])
def test_ses_bounce_notification(envelope: bool) -> None:
    """An SES permanent bounce through SNS names our mail, its recipient and 5.1.1."""
    raw = ses("Bounce", envelope=envelope)
    cls = _classify(raw)
    assert cls.bounce
    assert "ses-notification" in cls.reasons
    report = read_bounce(raw, parse_mail(raw))
    assert report.message_ids == (OURS,)
    assert report.recipients == ("anna@schule.example",)
    assert (report.status, report.permanent, report.failed) == ("5.1.1", True, True)


def test_ses_transient_bounce_is_not_permanent() -> None:
    """An SES transient bounce marks our mail but blocks nobody."""
    raw = ses("Bounce", bounce_type="Transient")
    report = read_bounce(raw, parse_mail(raw))
    assert report.failed
    assert not report.permanent


def test_ses_complaint_and_delivery() -> None:
    """An SES complaint is a failure (no more automatic mail); a delivery notice is none."""
    complaint = read_bounce(ses("Complaint"), parse_mail(ses("Complaint")))
    assert (complaint.permanent, complaint.failed, complaint.reason) == (
        True, True, "complaint: ses",
    )  # fmt: skip
    delivery = read_bounce(ses("Delivery"), parse_mail(ses("Delivery")))
    assert not delivery.failed
    assert _classify(ses("Delivery")).bounce


LIST_ANSWERS = {
    "fml": (
        b"From: elena-admin@fml.example.org\nTo: support@stueber.de\n"
        b"Subject: Re: [Ticket#100001] Drucker\nX-MLServer: fml [fml 4.0.3 release]\n"
        b"X-ML-Name: elena\nContent-Type: text/plain; charset=ISO-2022-JP\n\n"
        b"You are not a member of this mailing list <elena@fml.example.org>.\n"
    ),
    "mailman": (
        b"From: staff-owner@lists.example.org\nTo: support@stueber.de\n"
        b"Subject: Your message to Staff awaits moderator approval\n"
        b"X-Mailman-Version: 2.1.39\n\nYour mail to 'Staff' was rejected: Post by non-member "
        b"to a members-only list\n"
    ),
    "mailman-bounces": (
        b"From: staff-bounces@lists.example.org\nTo: support@stueber.de\n"
        b"Subject: Message rejected\n\nYou are not allowed to post to this mailing list.\n"
    ),
    "majordomo": (
        b"From: Majordomo@lists.example.org\nTo: support@stueber.de\n"
        b"Subject: Majordomo results\n\n>>>> Drucker\n**** Command 'drucker' not recognized.\n"
        b"**** unknown command\n"
    ),
    "ezmlm": (
        b"From: staff-help@lists.example.org\nTo: support@stueber.de\n"
        b"Subject: ezmlm response\nMailing-List: contact staff-help@lists.example.org; "
        b"run by ezmlm\n\nHi! This is the ezmlm program. Your message was rejected: you are not "
        b"a subscriber of this list.\n"
    ),
    "sympa": (
        b"From: SYMPA <sympa@lists.example.org>\nTo: support@stueber.de\n"
        b"Subject: Message distribution: Authorization denied\n\nYou are not allowed to send "
        b"messages to list staff@lists.example.org. Your message was rejected.\n"
    ),
    "listserv-request": (
        b"From: staff-request@lists.example.org\nTo: support@stueber.de\nSubject: Re: Drucker\n\n"
        b"Error: you are not subscribed to this list.\n"
    ),
}


@pytest.mark.parametrize("name", sorted(LIST_ANSWERS))
def test_list_manager_error_answers(name: str) -> None:
    """fml, Mailman, majordomo, ezmlm and Sympa error answers open nothing (bounce or automatic)."""
    cls = _classify(LIST_ANSWERS[name])
    assert cls.automatic
    if name != "ezmlm":  # ezmlm writes from list-help@: automatic by its Mailing-List header
        assert cls.bounce, cls.reasons
        assert "list-manager-error" in cls.reasons


@pytest.mark.parametrize(
    ("sender", "bounce"),
    [
        ("post_master@vtext.com", True),
        ("postoffice@example.net", True),
        ("Mailer_Daemon@example.net", True),
        ("staff-admin@lists.example.org", False),
        ("staff-bounces@lists.example.org", False),
        ("staff-request@lists.example.org", False),
        ("staff-owner@lists.example.org", False),
        ("owner-staff@lists.example.org", False),
        ("noreply@example.com", False),
        ("no-reply@example.com", False),
        ("no_reply@example.com", False),
        ("no.reply@example.com", False),
        ("do-not-reply@example.com", False),
        ("donotreply@example.com", False),
        ("do_not_reply@example.com", False),
        ("DoNotReply@example.com", False),
        ("dont-reply@example.com", False),
        ("jira-noreply@example.com", False),
        ("ne-pas-repondre@example.fr", False),
    ],
)
def test_role_senders(sender: str, bounce: bool) -> None:
    """Role senders are automatic (delivery-report senders: bounces), whatever they write."""
    raw = f"From: {sender}\nTo: support@stueber.de\nSubject: Hallo\n\nHallo, wie geht es?\n"
    cls = _classify(raw.encode())
    assert cls.automatic, sender
    assert cls.bounce is bounce, (sender, cls.reasons)


@pytest.mark.parametrize(
    "sender", ["anna@schule.example", "it-help@schule.example", "replyto@example.com",
               "noreplyanna@example.com", "postmaster-anna@example.com"],
)  # fmt: skip
def test_people_are_not_role_senders(sender: str) -> None:
    """A person's address that only resembles a role sender is not automatic."""
    raw = f"From: {sender}\nTo: support@stueber.de\nSubject: Hallo\n\nDer Drucker.\n"
    assert not _classify(raw.encode()).automatic


def test_customer_forwarding_a_bounce_is_a_conversation() -> None:
    """A person who forwards a bounce to ask for help writes a normal mail."""
    raw = mixed(
        "From: anna@schule.example\nTo: support@stueber.de\n"
        "Subject: Fwd: Returned mail: User unknown\n",
        b"Content-Type: text/plain\n\nHallo, ich bekomme diese Fehlermeldung. Was tun?\n",
        b"Content-Type: message/rfc822\n\n" + TEXT_BOUNCES["sendmail"],
    )
    cls = _classify(raw)
    assert not cls.bounce
    assert not cls.automatic


def _corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {name} not found under {CORPUS}")
    return path.read_bytes()


@pytest.mark.parametrize("name", ["aol.eml", "yahoo.eml"])
def test_corpus_arf_complaints(name: str) -> None:
    """flanker's real AOL and Yahoo feedback reports are complaints naming the original."""
    raw = _corpus(f"flanker/tests/fixtures/messages/complaints/{name}")
    assert "feedback-report" in _classify(raw).reasons
    report = read_bounce(raw, parse_mail(raw))
    assert report.reason.startswith("complaint: ")
    assert report.message_ids


def test_corpus_mailman_digest_from_request_address_is_automatic() -> None:
    """CPython's Mailman digest, sent from ppp-request@, is automatic mail."""
    raw = (Path(__file__).parent / "fixtures" / "cpython-test_email" / "msg_02.txt").read_bytes()
    cls = _classify(raw)
    assert cls.automatic
    assert not cls.bounce
    assert "list-manager" in cls.reasons


# --- through the real daemon ---------------------------------------------------------------------


def _rows(env: Env) -> list[tuple[str, str, str]]:
    rows = read_rows(env.data_dir, "SELECT header_from, outcome, reason FROM messages ORDER BY id")
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("kind", ["arf", "ses", "au", "verizon", "list"])
async def test_reports_open_nothing_and_get_no_answer(env: Env, kind: str) -> None:
    """A registered report sender's report is stored as a bounce, opens no ticket, gets no
    mail, and marks the confirmation it reports."""
    assert env.sink is not None
    assert (await env.send(make_mail("anna@schule.example", "Drucker")))[0] == 250
    (confirmation,) = await env.sink.wait_for(1)
    ours = str(confirmation.message["Message-ID"])
    raw = {
        "arf": arf(),
        "ses": ses("Bounce"),
        "au": TEXT_BOUNCES["au"],
        "verizon": TEXT_BOUNCES["verizon"],
        "list": LIST_ANSWERS["mailman-bounces"] + ORIGINAL.encode(),
    }[kind].replace(OURS.encode(), ours.encode())
    sender = parse_mail(raw).from_addr
    await env.user(sender, "10042")  # registered: only the recognition keeps it out

    code, text = await env.send(raw, mail_from="relay@example.net")
    assert (code, text) == (250, "2.0.0 Ok")
    assert _rows(env)[-1] == (sender, "discarded", "bounce")
    assert len(await env.cli_json("ticket", "list")) == 1
    (entry,) = await env.cli_json("outbox", "list")  # nothing queued for the report
    assert entry["status"] == "bounced"


async def test_role_sender_gets_automatic_ticket_without_confirmation(env: Env) -> None:
    """A registered noreply sender's mail opens a ticket flagged automatic and gets no mail."""
    assert env.sink is not None
    await env.user("do_not_reply@schule.example", "10042")
    code, text = await env.send(make_mail("do_not_reply@schule.example", "Ihr Passwort"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    assert _rows(env)[-1][1:] == ("ticket_created", "new_ticket_automatic")
    assert await env.cli_json("outbox", "list") == []
