"""Routing: ticket tags, subjects, loop-guard signals and the one decision per mail."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketmail.intake.route import (
    Action,
    Classification,
    Facts,
    RoutePolicy,
    classify,
    clean_subject,
    decide,
    find_ticket_numbers,
    format_tag,
)
from ticketmail.mail.parse import ParsedMail, parse_mail
from ticketmail.models import Customer, TicketRef, User

OWN = "support@stueber.de"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = RoutePolicy(
    own_addresses=frozenset({OWN, "helpdesk@stueber.de"}),
    loop_token=OWN,
    subject_tag="Ticket",
    reopen_days=14,
    acknowledge_followups=True,
    unknown_sender="reject",
    no_contract="reply",
    max_auto_replies_per_hour=5,
    max_auto_replies_per_ticket_per_hour=3,
)
ACME = Customer("K-1", "ACME GmbH", support_until=date(2026, 12, 31), trial_until=None)
OTHER = Customer("K-2", "Other AG", support_until=date(2026, 12, 31), trial_until=None)
EXPIRED = Customer("K-3", "Gone KG", support_until=date(2025, 12, 31), trial_until=None)
ANNA = User("anna@acme.example", "Anna", "de", ACME)
NORMAL = Classification(bounce=False, own_loop=False, automatic=False, reasons=())
AUTOMATIC = Classification(bounce=False, own_loop=False, automatic=True, reasons=("x",))


def mail(head: str = "", body: str = "Hallo\n") -> ParsedMail:
    """A small mail from Anna to support, with extra header lines."""
    base = f"From: Anna <anna@acme.example>\nTo: {OWN}\nSubject: Drucker\n"
    return parse_mail((base + head.strip("\n") + "\n\n" + body).encode("utf-8"))


def ticket(number: int = 100001, customer: str = "K-1", **changes: object) -> TicketRef:
    """A ticket of ACME (unless told otherwise), open, no recent automatic mail."""
    ref = TicketRef(
        number=number,
        customer=customer,
        status="open",
        closed_at=None,
        requester="anna@acme.example",
        subject="Drucker",
        recent_auto_replies=0,
    )
    return dataclasses.replace(ref, **changes)  # type: ignore[arg-type]


def facts(
    *,
    sender: User | None = ANNA,
    tagged: tuple[TicketRef, ...] = (),
    referenced: tuple[TicketRef, ...] = (),
    recent: int = 0,
) -> Facts:
    return Facts(
        now=NOW,
        sender=sender,
        tagged=tagged,
        referenced=referenced,
        recent_auto_replies_to_sender=recent,
    )


def signals(
    head: str,
    *,
    envelope_from: str = "anna@acme.example",
    own_id: bool = False,
    from_line: str | None = None,
) -> Classification:
    """Classify a mail with extra headers (and optionally another From line)."""
    base = from_line or "From: Anna <anna@acme.example>"
    raw = f"{base}\nTo: {OWN}\nSubject: Frage\n{head.strip(chr(10))}\n\nText\n"
    return classify(
        parse_mail(raw.encode("utf-8")),
        envelope_from=envelope_from,
        policy=POLICY,
        own_message_id=own_id,
    )


# --- subject tags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "numbers"),
    [
        ("[Ticket#123] Drucker", (123,)),
        ("Re: [Ticket#123] Drucker", (123,)),
        ("AW: WG: [ticket#123] Drucker", (123,)),
        ("Fwd: Drucker [TICKET # 123]", (123,)),
        ("RE: [ Ticket #123 ]", (123,)),
        ("[Ticket#123] und [Ticket#7] und [Ticket#123]", (123, 7)),
        ("[OTRS#123] Drucker", ()),
        ("Ticket#123 Drucker", ()),
        ("[Ticket#] Drucker", ()),
        ("[Tickets#123]", ()),
        ("[Ticket#12a]", ()),
        ("[Ticket#١٢٣] Arabic-Indic digits", ()),
        ("", ()),
    ],
)
def test_find_ticket_numbers(subject: str, numbers: tuple[int, ...]) -> None:
    """Only our bracketed tag counts: any case, spaces around '#', anywhere, no repeats."""
    assert find_ticket_numbers(subject, "Ticket") == numbers


@given(
    number=st.integers(min_value=0, max_value=10**12 - 1),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    tag=st.sampled_from(["Ticket", "TM", "Stueber-Support", "Anfrage Nr.", "a+b"]),
)
def test_format_tag_round_trip(number: int, before: str, after: str, tag: str) -> None:
    """A tag written by format_tag is found again in any surrounding text."""
    subject = before + format_tag(tag, number) + after
    assert number in find_ticket_numbers(subject, tag)


@given(
    number=st.integers(min_value=1, max_value=10**9),
    other=st.sampled_from(["OTRS", "Redmine", "Tickets", "JIRA", "Ticket-Nr"]),
)
def test_other_systems_tags_ignored(number: int, other: str) -> None:
    """Tags of other systems never count as ours."""
    assert find_ticket_numbers(f"Re: [{other}#{number}] x", "Ticket") == ()


@pytest.mark.parametrize(
    ("subject", "clean"),
    [
        ("Re: [Ticket#123] Drucker kaputt", "Drucker kaputt"),
        ("AW: WG: Fwd: [ticket # 123] Drucker kaputt", "Drucker kaputt"),
        ("[Ticket#123] AW: Re[2]: Drucker", "Drucker"),
        ("Drucker [Ticket#123] kaputt", "Drucker kaputt"),
        ("RE: [OTRS#5] Drucker", "[OTRS#5] Drucker"),
        ("Antw: Frage zur Rechnung", "Frage zur Rechnung"),
        ("Reklamation: Lieferung", "Reklamation: Lieferung"),
        ("Re:", ""),
    ],
)
def test_clean_subject(subject: str, clean: str) -> None:
    """Tags and reply/forward prefixes go; other text, including other systems' tags, stays."""
    assert clean_subject(subject, "Ticket") == clean


@given(
    words=st.from_regex(r"[A-Za-z][A-Za-z0-9 ,.!?-]{0,40}[A-Za-z0-9.!?]", fullmatch=True).filter(
        lambda s: "  " not in s and clean_subject(s, "Ticket") == s
    ),
    prefixes=st.lists(
        st.sampled_from(["Re: ", "AW: ", "WG: ", "Fwd: ", "RE:", "aw: "]), max_size=4
    ),
    number=st.integers(min_value=1, max_value=10**9),
)
def test_clean_subject_property(words: str, prefixes: list[str], number: int) -> None:
    """Any chain of prefixes and one tag around a subject cleans back to that subject."""
    subject = "".join(prefixes) + format_tag("Ticket", number) + " " + words
    assert clean_subject(subject, "Ticket") == words


# --- classify -------------------------------------------------------------------------------------


def test_normal_mail_carries_no_signal() -> None:
    """A person's mail with ordinary headers is neither automatic, bounce nor loop."""
    cls = signals("Message-ID: <1@acme.example>\nPrecedence: normal\nAuto-Submitted: no")
    assert cls == Classification(bounce=False, own_loop=False, automatic=False, reasons=())


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "auto-submitted"),
        ("Auto-Submitted: auto-generated", "auto-submitted"),
        ("Auto-Submitted: auto-notified; owner-email=x@y", "auto-submitted"),
        ("Precedence: bulk", "precedence"),
        ("Precedence: junk", "precedence"),
        ("Precedence: list", "precedence"),
        ("Precedence: auto_reply", "precedence"),
        ("X-Precedence: bulk", "x-precedence"),
        ("X-Precedence: junk", "x-precedence"),
        ("X-Precedence: list", "x-precedence"),
        ("X-Precedence: auto_reply", "x-precedence"),
        ("X-Precedence: Auto_Reply (vacation)", "x-precedence"),
        ("X-Auto-Response-Suppress: All", "x-auto-response-suppress"),
        ("X-Auto-Response-Suppress: AutoReply", "x-auto-response-suppress"),
        ("X-Auto-Response-Suppress: OOF", "x-auto-response-suppress"),
        ("X-Auto-Response-Suppress: DR, RN, NRN", "x-auto-response-suppress"),
        ("X-Autoreply: yes", "x-autoreply"),
        ("X-Autorespond: yes", "x-autorespond"),
        ("X-Autoresponder: on", "x-autoresponder"),
        ("X-Autogenerated: Reply", "x-autogenerated"),
        ("X-Mail-Autoreply: yes", "x-mail-autoreply"),
        ("List-Id: <users.lists.example>", "list-id"),
        ("List-Unsubscribe: <mailto:leave@lists.example>", "list-unsubscribe"),
        ("Mailing-List: contact users-help@lists.example", "mailing-list"),
        ("X-Loop: otrs@other.example", "x-loop"),
        ("X-No-Loop: yes", "x-no-loop"),
        ("X-No-Loop: otrs@other.example", "x-no-loop"),
        ("X-Bluebottle-Request: <1234>", "challenge-response"),
        ("X-Boxtrapper: 3d6a4b7e", "challenge-response"),
        ("X-AskVersion: 2.1", "challenge-response"),
        ("X-Delivery-Agent: TMDA/1.1.12 (Macallan)", "challenge-response"),
    ],
)
def test_automatic_signals(header: str, reason: str) -> None:
    """Each marker of automatic mail from SPEC 4.3 flags the mail automatic (not a bounce)."""
    cls = signals(header)
    assert cls.automatic
    assert reason in cls.reasons
    assert not cls.bounce
    assert not cls.own_loop


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No (a person)",
        "Precedence: first-class",
        "X-Auto-Response-Suppress: RN, NRN",
        "X-Auto-Response-Suppress: ",
        "X-Precedence: normal",
        "X-Delivery-Agent: procmail",
    ],
)
def test_harmless_header_values_are_no_signal(header: str) -> None:
    """Values that do not mark automatic mail leave a person's mail unflagged."""
    assert not signals(header).automatic


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@shop.example",
        "no-reply@shop.example",
        "NoReply+invoices@shop.example",
        "do-not-reply@shop.example",
        "donotreply@shop.example",
        "notifications@github.example",
    ],
)
def test_noreply_senders_are_automatic(sender: str) -> None:
    """Noreply-style senders are automatic, whatever their headers say."""
    cls = signals("", from_line=f"From: Shop <{sender}>")
    assert cls.automatic
    assert "noreply-sender" in cls.reasons


def test_out_of_office_subject_is_automatic() -> None:
    """An out-of-office subject marks the mail automatic even without headers."""
    raw = b"From: anna@acme.example\nSubject: Abwesenheitsnotiz: Drucker\n\nbin weg\n"
    cls = classify(
        parse_mail(raw), envelope_from="anna@acme.example", policy=POLICY, own_message_id=False
    )
    assert cls.automatic


@pytest.mark.parametrize(
    ("head", "from_line", "envelope_from", "reason"),
    [
        (
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
            None,
            "anna@acme.example",
            "multipart/report",
        ),
        ("", "From: MAILER-DAEMON@mx.acme.example", "anna@acme.example", "mailer-daemon-sender"),
        (
            "",
            "From: Mail System <postmaster@acme.example>",
            "x@acme.example",
            "mailer-daemon-sender",
        ),
        ("", None, "", "null-sender"),
        ("", "From: <>", "anna@acme.example", "null-from"),
        (
            "Auto-Submitted: auto-replied",
            "From: Mail Delivery System <>",
            "x@y.example",
            "null-from",
        ),
        ("", 'From: "MAILER DAEMON" < >', "x@y.example", "null-from"),
    ],
)
def test_bounces(head: str, from_line: str | None, envelope_from: str, reason: str) -> None:
    """DSNs, mailer-daemon/postmaster senders and a bare null envelope sender are bounces."""
    cls = signals(head, from_line=from_line, envelope_from=envelope_from)
    assert cls.bounce
    assert cls.automatic
    assert reason in cls.reasons


@pytest.mark.parametrize("from_line", [None, "From: ", "From: Anna", "From: <anna>", "From: @"])
def test_missing_or_odd_from_is_no_null_from_bounce(from_line: str | None) -> None:
    """Only a From naming the null path `<>` is a bounce; a missing or broken one is not."""
    head = "" if from_line is None else from_line
    raw = f"{head}\nTo: {OWN}\nSubject: Frage\n\nText\n".lstrip("\n")
    cls = classify(
        parse_mail(raw.encode()), envelope_from="x@y.example", policy=POLICY, own_message_id=False
    )
    assert "null-from" not in cls.reasons
    assert not cls.bounce


def test_delivery_status_part_is_a_bounce() -> None:
    """A message/delivery-status part makes a bounce even under multipart/mixed."""
    raw = (
        b"From: anna@acme.example\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nUndeliverable\n"
        b"--b\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n--b--\n"
    )
    cls = classify(
        parse_mail(raw), envelope_from="x@y.example", policy=POLICY, own_message_id=False
    )
    assert cls.bounce
    assert "delivery-status" in cls.reasons


def test_null_sender_with_auto_reply_marker_is_automatic_not_bounce() -> None:
    """Exchange sends out-of-office replies with MAIL FROM:<>: automatic, not a bounce."""
    cls = signals("Auto-Submitted: auto-replied", envelope_from="")
    assert cls.automatic
    assert not cls.bounce
    assert "null-sender" in cls.reasons


@pytest.mark.parametrize(
    ("head", "from_line", "own_id", "reason"),
    [
        ("", f"From: Support <{OWN.upper()}>", False, "own-address"),
        ("", "From: helpdesk@stueber.de", False, "own-address"),
        (f"X-Loop: {OWN}", None, False, "own-x-loop"),
        ("", None, True, "own-message-id"),
    ],
)
def test_own_loop(head: str, from_line: str | None, own_id: bool, reason: str) -> None:
    """Mail from our own addresses, with our X-Loop or our Message-ID is our own loop."""
    cls = signals(head, from_line=from_line, own_id=own_id)
    assert cls.own_loop
    assert cls.automatic
    assert reason in cls.reasons
    assert "x-loop" not in cls.reasons  # our own X-Loop is no foreign one


# --- decide ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "action"), [("reject", Action.REJECT), ("discard", Action.DISCARD)]
)
def test_unknown_sender(setting: str, action: Action) -> None:
    """An unregistered sender is rejected, or silently discarded with policy discard."""
    policy = dataclasses.replace(POLICY, unknown_sender=setting)
    decision = decide(mail(), facts(sender=None), NORMAL, policy)
    assert decision.action is action
    assert decision.reason == "unknown_sender"
    assert decision.notice is None
    assert decision.ticket is None


def test_no_contract_sends_notice() -> None:
    """A registered user without contract or trial gets the no_contract notice, no ticket."""
    user = dataclasses.replace(ANNA, customer=EXPIRED)
    decision = decide(mail(), facts(sender=user), NORMAL, POLICY)
    assert decision.action is Action.NO_CONTRACT
    assert decision.notice == "no_contract"
    assert decision.ticket is None


def test_trial_counts_as_contract() -> None:
    """An active trial is as good as a contract."""
    trial = dataclasses.replace(EXPIRED, trial_until=NOW.date())
    user = dataclasses.replace(ANNA, customer=trial)
    assert decide(mail(), facts(sender=user), NORMAL, POLICY).action is Action.NEW_TICKET


def test_no_contract_automatic_is_discarded() -> None:
    """Automatic mail from a user without contract is dropped without any answer."""
    user = dataclasses.replace(ANNA, customer=EXPIRED)
    decision = decide(mail(), facts(sender=user), AUTOMATIC, POLICY)
    assert decision.action is Action.DISCARD
    assert decision.notice is None


def test_no_contract_rate_limited() -> None:
    """The no_contract notice respects the per-address rate limit."""
    user = dataclasses.replace(ANNA, customer=EXPIRED)
    decision = decide(mail(), facts(sender=user, recent=5), NORMAL, POLICY)
    assert decision.action is Action.NO_CONTRACT
    assert decision.notice is None
    assert decision.suppressed == "rate_limit_address"


def test_new_ticket_with_notice() -> None:
    """A person's mail without a matching ticket opens one and confirms it."""
    decision = decide(mail(), facts(), NORMAL, POLICY)
    assert decision.action is Action.NEW_TICKET
    assert decision.notice == "ticket_created"
    assert not decision.automatic


def test_new_ticket_rate_limited() -> None:
    """At the per-address limit the ticket still opens, but no confirmation goes out."""
    decision = decide(mail(), facts(recent=5), NORMAL, POLICY)
    assert decision.action is Action.NEW_TICKET
    assert decision.notice is None
    assert decision.suppressed == "rate_limit_address"


def test_automatic_new_ticket_sends_nothing() -> None:
    """Automatic mail matching no ticket opens an automatic ticket without any notice."""
    decision = decide(mail(), facts(), AUTOMATIC, POLICY)
    assert decision.action is Action.NEW_TICKET
    assert decision.automatic
    assert decision.notice is None


@pytest.mark.parametrize(
    "cls",
    [
        Classification(bounce=True, own_loop=False, automatic=True, reasons=("null-sender",)),
        Classification(bounce=False, own_loop=True, automatic=True, reasons=("own-x-loop",)),
    ],
)
def test_bounce_and_own_loop_are_discarded(cls: Classification) -> None:
    """Bounces and our own loops are discarded, even for a known sender with a tagged ticket."""
    decision = decide(mail(), facts(tagged=(ticket(),)), cls, POLICY)
    assert decision.action is Action.DISCARD
    assert decision.ticket is None
    assert decision.notice is None


def test_tag_to_own_ticket_appends() -> None:
    """A tag naming a ticket of the sender's institution appends to it."""
    own = ticket()
    decision = decide(mail(), facts(tagged=(own,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.ticket == own
    assert decision.new_status is None
    assert decision.notice == "ticket_updated"


def test_reference_to_own_ticket_appends() -> None:
    """Without a tag, In-Reply-To/References naming our ticket appends to it."""
    own = ticket()
    decision = decide(mail(), facts(referenced=(own,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.ticket == own


def test_followup_acknowledgement_can_be_off() -> None:
    """With acknowledge_followups off a follow-up is stored without a notice."""
    policy = dataclasses.replace(POLICY, acknowledge_followups=False)
    decision = decide(mail(), facts(tagged=(ticket(),)), NORMAL, policy)
    assert decision.action is Action.APPEND
    assert decision.notice is None


def test_tag_to_foreign_ticket_opens_new_ticket() -> None:
    """A tag naming another institution's ticket opens a new ticket and reveals nothing."""
    foreign = ticket(555, customer="K-2", status="closed", closed_at=NOW - timedelta(days=90))
    decision = decide(mail(), facts(tagged=(foreign,), referenced=(foreign,)), NORMAL, POLICY)
    assert decision.action is Action.NEW_TICKET
    assert decision.ticket is None
    assert decision.previous_ticket is None


def test_closed_ticket_reopens_within_reopen_days() -> None:
    """A reply to a ticket closed less than reopen_days ago reopens it."""
    closed = ticket(status="closed", closed_at=NOW - timedelta(days=13, hours=23))
    decision = decide(mail(), facts(tagged=(closed,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.ticket == closed
    assert decision.new_status == "open"


def test_old_closed_ticket_gives_new_ticket_naming_it() -> None:
    """A reply to a ticket closed reopen_days or longer ago opens a new one naming the old."""
    closed = ticket(status="closed", closed_at=NOW - timedelta(days=14))
    decision = decide(mail(), facts(tagged=(closed,)), NORMAL, POLICY)
    assert decision.action is Action.NEW_TICKET
    assert decision.previous_ticket == closed.number
    assert decision.ticket is None
    assert decision.notice == "ticket_created"


def test_automatic_on_closed_ticket_appends_silently() -> None:
    """An out-of-office reply to a closed ticket is stored there, status unchanged, no notice."""
    closed = ticket(status="closed", closed_at=NOW - timedelta(days=100))
    decision = decide(mail(), facts(tagged=(closed,)), AUTOMATIC, POLICY)
    assert decision.action is Action.APPEND
    assert decision.ticket == closed
    assert decision.new_status is None
    assert decision.notice is None
    assert decision.automatic


def test_automatic_on_answered_ticket_keeps_status() -> None:
    """Automatic mail to an answered ticket does not reopen it."""
    answered = ticket(status="answered")
    decision = decide(mail(), facts(tagged=(answered,)), AUTOMATIC, POLICY)
    assert decision.action is Action.APPEND
    assert decision.new_status is None


def test_customer_reply_to_answered_ticket_reopens() -> None:
    """A customer's reply to an answered ticket sets it open again."""
    answered = ticket(status="answered")
    decision = decide(mail(), facts(tagged=(answered,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.new_status == "open"


def test_followup_rate_limited_per_ticket() -> None:
    """At the per-ticket limit a follow-up is stored without acknowledgement."""
    busy = ticket(recent_auto_replies=3)
    decision = decide(mail(), facts(tagged=(busy,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.notice is None
    assert decision.suppressed == "rate_limit_ticket"


def test_followup_rate_limited_per_address() -> None:
    """At the per-address limit a follow-up is stored without acknowledgement."""
    decision = decide(mail(), facts(tagged=(ticket(),), recent=5), NORMAL, POLICY)
    assert decision.notice is None
    assert decision.suppressed == "rate_limit_address"


def test_own_ticket_wins_over_foreign_tags() -> None:
    """Among several tags the sender's own ticket is chosen, whatever the order."""
    own = ticket(42)
    foreign = ticket(7, customer="K-2")
    decision = decide(mail(), facts(tagged=(foreign, own)), NORMAL, POLICY)
    assert decision.ticket == own


def test_open_own_ticket_wins_over_a_long_closed_one() -> None:
    """A tag of a long-closed own ticket does not hide an open own ticket the mail references."""
    old = ticket(40, status="closed", closed_at=NOW - timedelta(days=POLICY.reopen_days + 1))
    current = ticket(41, status="answered")
    decision = decide(mail(), facts(tagged=(old,), referenced=(current,)), NORMAL, POLICY)
    assert decision.action is Action.APPEND
    assert decision.ticket == current
    assert decision.new_status == "open"
    # Named alone, the long-closed ticket still gives a new ticket that names it.
    alone = decide(mail(), facts(tagged=(old,)), NORMAL, POLICY)
    assert (alone.action, alone.previous_ticket) == (Action.NEW_TICKET, 40)


# --- decide: properties ---------------------------------------------------------------------------

_refs = st.builds(
    TicketRef,
    number=st.integers(min_value=1, max_value=10**6),
    customer=st.sampled_from(["K-1", "K-2", "K-3", "k-1", ""]),
    status=st.sampled_from(["new", "open", "answered", "closed"]),
    closed_at=st.one_of(
        st.none(), st.integers(min_value=0, max_value=60).map(lambda d: NOW - timedelta(days=d))
    ),
    requester=st.sampled_from(["anna@acme.example", "eve@other.example"]),
    subject=st.just("s"),
    recent_auto_replies=st.integers(min_value=0, max_value=5),
)
_classes = st.builds(
    Classification,
    bounce=st.booleans(),
    own_loop=st.booleans(),
    automatic=st.booleans(),
    reasons=st.just(()),
)


@given(
    tagged=st.lists(_refs, max_size=5).map(tuple),
    referenced=st.lists(_refs, max_size=5).map(tuple),
    customer=st.sampled_from([ACME, OTHER, EXPIRED]),
    cls=_classes,
    recent=st.integers(min_value=0, max_value=6),
)
def test_decision_never_touches_another_institution(
    tagged: tuple[TicketRef, ...],
    referenced: tuple[TicketRef, ...],
    customer: Customer,
    cls: Classification,
    recent: int,
) -> None:
    """Whatever is tagged or referenced, only the sender's own tickets are appended or named."""
    user = dataclasses.replace(ANNA, customer=customer)
    decision = decide(
        mail(),
        facts(sender=user, tagged=tagged, referenced=referenced, recent=recent),
        cls,
        POLICY,
    )
    candidates = tagged + referenced
    if decision.ticket is not None:
        assert decision.action is Action.APPEND
        assert decision.ticket.customer == customer.number
        assert decision.ticket in candidates
    if decision.previous_ticket is not None:
        assert any(
            t.number == decision.previous_ticket and t.customer == customer.number
            for t in candidates
        )
    own_open = [t for t in candidates if t.customer == customer.number and t.status != "closed"]
    if own_open and customer.has_support(NOW.date()) and not (cls.bounce or cls.own_loop):
        assert decision.action is Action.APPEND


@given(
    tagged=st.lists(_refs, max_size=4).map(tuple),
    sender=st.sampled_from([None, ANNA, dataclasses.replace(ANNA, customer=EXPIRED)]),
    bounce=st.booleans(),
    own_loop=st.booleans(),
    recent=st.integers(min_value=0, max_value=6),
    no_contract=st.sampled_from(["reply", "reject", "discard"]),
)
def test_automatic_mail_never_gets_a_notice(
    tagged: tuple[TicketRef, ...],
    sender: User | None,
    bounce: bool,
    own_loop: bool,
    recent: int,
    no_contract: str,
) -> None:
    """No automatic mail, bounce or loop is ever answered, and no notice beats the rate limit."""
    policy = dataclasses.replace(POLICY, no_contract=no_contract)
    cls = Classification(bounce=bounce, own_loop=own_loop, automatic=True, reasons=())
    decision = decide(mail(), facts(sender=sender, tagged=tagged, recent=recent), cls, policy)
    assert decision.notice is None
    normal = decide(mail(), facts(sender=sender, tagged=tagged, recent=recent), NORMAL, policy)
    if recent >= POLICY.max_auto_replies_per_hour:
        assert normal.notice is None
