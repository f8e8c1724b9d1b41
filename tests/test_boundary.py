"""Properties over a running daemon: institutions never reach each other's tickets, and
attachment names never become paths."""

from __future__ import annotations

import asyncio
import re
import smtplib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SUPPORT,
    Env,
    Received,
    Sink,
    eventually,
    lasting_database,
    make_mail,
    queued_in_outbox,
    read_rows,
    stored_blob,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.storage.store import CustomerRow, UserRow

WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "123456789"
}
USERS = {"a1@a.example": "A", "a2@a.example": "A", "b1@b.example": "B", "b2@b.example": "B"}


@dataclass
class Running:
    port: int
    data_dir: Path
    tickets: dict[int, str]  # ticket number -> institution
    message_ids: dict[str, str]  # Message-ID known to ticketmail -> institution


def _send(port: int, sender: str, subject: str, body: str, message_id: str,
          references: list[str]) -> str:  # fmt: skip
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if references:
        msg["In-Reply-To"] = references[-1]
        msg["References"] = " ".join(references)
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.ehlo()
        smtp.mail(sender)
        smtp.rcpt(SUPPORT)
        code, reply = smtp.data(msg.as_bytes())
    assert code == 250, reply
    return reply.decode()


@pytest.fixture(scope="module")
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The real daemon in a thread of its own (file relay), with two institutions' tickets."""
    root = tmp_path_factory.mktemp("boundary")
    lasting_database(request, root / "var")  # on PostgreSQL: one database for the module
    config = load_config(
        write_config(root / "c.toml", root / "var", None,
                     policy={"max_auto_replies_per_hour": 100000,
                             "max_auto_replies_per_ticket_per_hour": 100000}),
        environ={},
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    daemon = Daemon(config)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(daemon.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)

    async def register() -> None:
        assert daemon.store is not None
        now = datetime.now(UTC)
        await daemon.store.add_customers(
            [CustomerRow(c, f"Schule {c}", date(2099, 1, 1)) for c in ("A", "B")], now=now
        )
        await daemon.store.add_users([UserRow(u, c) for u, c in USERS.items()], now=now)

    asyncio.run_coroutine_threadsafe(register(), loop).result(30)
    state = Running(daemon.port, config.data_dir, {}, {})
    for i, (user, inst) in enumerate(USERS.items()):
        mid = f"<seed-{i}@{inst.lower()}.example>"
        reply = _send(state.port, user, f"SECRET-{inst}-{i} Anfrage", f"TEXT-{inst}-{i}", mid, [])
        state.tickets[int(reply.rsplit(" ", 1)[-1])] = inst
        state.message_ids[mid] = inst
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(daemon.stop(grace=5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


counter = iter(range(10**9))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sender=st.sampled_from(sorted(USERS)),
    tags=st.lists(st.integers(min_value=100000, max_value=100010), max_size=4),
    tag_style=st.sampled_from(["[Ticket#{}]", "[ticket # {}]", "AW: [Ticket#{}]", "[TICKET#{}]"]),
    ref_picks=st.lists(st.integers(min_value=0, max_value=7), max_size=3),
    noise=st.text(alphabet="abc [#]0123456789:", max_size=20),
)
def test_no_mail_reaches_another_institutions_ticket(
    running: Running, sender: str, tags: list[int], tag_style: str, ref_picks: list[int],
    noise: str,
) -> None:  # fmt: skip
    """Every inbound article sits on a ticket of its sender's institution, whatever it names."""
    own = USERS[sender]
    known_ids = sorted(running.message_ids)
    references = [known_ids[i % len(known_ids)] for i in ref_picks]
    subject = " ".join(tag_style.format(t) for t in tags) + f" {noise} SECRET-{own}-q"
    n = next(counter)
    reply = _send(running.port, sender, subject, f"TEXT-{own}-q{n}", f"<p{n}@x.example>",
                  references)  # fmt: skip
    number = int(reply.rsplit(" ", 1)[-1])
    running.tickets.setdefault(number, own)
    running.message_ids[f"<p{n}@x.example>"] = own
    ((customer,),) = read_rows(
        running.data_dir, "SELECT customer FROM tickets WHERE number = ?", (number,)
    )
    wrong = read_rows(
        running.data_dir,
        "SELECT a.id FROM articles a JOIN tickets t ON t.number = a.ticket "
        "JOIN users u ON u.email = a.sender WHERE u.customer != t.customer",
    )
    assert customer == own
    assert wrong == []


OWN_ID = re.compile(r"<tm\.(\d+)\.[0-9a-f]+\.[0-9a-f]+@[^>]+>")
AGENT = "max@stueber.de"


async def _drain(env: Env) -> None:
    """Wait (bounded) until the outbox holds nothing queued: every mail is at the sink."""
    await eventually(
        lambda: queued_in_outbox(env.data_dir) == 0, what="an outbox with nothing queued"
    )


async def _send_ok(env: Env, mail: EmailMessage) -> int:
    code, text = await env.send(mail)
    assert code == 250, text
    return int(text.rsplit(" ", 1)[-1])


def _mail(sender: str, subject: str, body: str, mid: str, refs: list[str]) -> EmailMessage:
    headers = {"In-Reply-To": refs[-1], "References": " ".join(refs)} if refs else None
    return make_mail(sender, subject, body, message_id=mid, headers=headers)


def _shown(received: Received) -> str:
    """What a person reads of a mail: its decoded subject and text."""
    msg = received.message
    part = msg.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    return f"{msg['Subject']}\n{text}"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tag_picks=st.lists(st.sampled_from(["other", "own", "stray"]), max_size=4),
    tag_style=st.sampled_from(["[Ticket#{}]", "[ticket # {}]", "AW: [Ticket#{}]", "[TICKET#{}]"]),
    ref_picks=st.lists(st.integers(min_value=0, max_value=5), max_size=5),
    noise=st.text(alphabet="abc [#]:", max_size=12),
    lang=st.sampled_from(["de", "en"]),
)
async def test_no_sent_mail_shows_another_institutions_ticket(
    boundary: Shared, tag_picks: list[str], tag_style: str, ref_picks: list[int], noise: str,
    lang: str,
) -> None:  # fmt: skip
    """A mail naming another institution's ticket (tag, our Message-IDs) reveals nothing of it."""
    env = boundary.env
    assert env.sink is not None
    assert env.daemon.store is not None
    n = next(counter)
    x_user, y_user = f"x{n}@x{n}.example", f"y{n}@y{n}.example"
    await env.customer(f"X{n}", f"Schule X{n}")
    await env.customer(f"Y{n}", f"Schule Y{n}")
    await env.user(x_user, f"X{n}", lang=lang)
    await env.user(y_user, f"Y{n}", lang="de")
    await env.daemon.store.add_agent(AGENT, "Max Berger", now=env.clock())

    # The other institution's ticket: its question, and an agent's answer with its own text.
    secret, text = f"SECRET-Y{n}", f"TEXT-Y{n}"
    y_mid = f"<y{n}-q@y{n}.example>"
    other = await _send_ok(env, _mail(y_user, f"{secret} Anfrage", f"{text} Frage", y_mid, []))
    answer = make_mail(AGENT, f"[Ticket#{other}] {secret}", f"{text} Antwort\n")
    assert await env.send(answer) == (250, f"2.0.0 Ok: ticket {other}")
    # The first institution's own ticket.
    x_mid = f"<x{n}-q@x{n}.example>"
    own = await _send_ok(env, _mail(x_user, f"OWN-X{n} Frage", f"OWN-X{n} Text", x_mid, []))
    await _drain(env)
    to_y = [r for r in env.sink.received if r.rcpt_tos == [y_user]]
    to_x = [r for r in env.sink.received if r.rcpt_tos == [x_user]]
    # The strings looked for below are what mails about the other ticket do show.
    assert len(to_y) == 2
    assert all(secret in _shown(r) and str(other) in _shown(r) for r in to_y)
    assert any(f"{text} Antwort" in _shown(r) for r in to_y)
    y_ids = [str(r.message["Message-ID"]) for r in to_y]
    assert all(OWN_ID.fullmatch(i) for i in y_ids)
    x_ids = [str(r.message["Message-ID"]) for r in to_x]

    pool = [*y_ids, y_mid, *x_ids, x_mid, f"<unknown{n}@nowhere.example>"]
    refs = [pool[i % len(pool)] for i in ref_picks]
    numbers = {"other": other, "own": own, "stray": other + 1000}
    subject = " ".join(tag_style.format(numbers[p]) for p in tag_picks) + f" {noise} Frage X{n}"
    probe = await _send_ok(env, _mail(x_user, subject, f"OWN-X{n} mehr", f"<x{n}-p@x.example>",
                                      refs))  # fmt: skip
    assert probe != other
    await _drain(env)

    to_x = [r for r in env.sink.received if r.rcpt_tos == [x_user]]
    assert len(to_x) == 2  # the confirmation of its own ticket, and the answer to the probe
    number = re.compile(rf"(?<!\d){other}(?!\d)")
    for received in to_x:
        raw = received.raw.decode("utf-8", errors="replace")
        for seen in (raw, _shown(received)):
            assert secret not in seen
            assert text not in seen
            assert not number.search(seen), seen
        assert not any(i in raw for i in [*y_ids, y_mid])


class Shared:
    """The daemon all examples of one test share (each example brings its own institutions)."""

    def __init__(self, env: Env) -> None:
        self.env = env

    def __repr__(self) -> str:  # hypothesis shows it with a failing example: keep it short
        return f"Shared(port={self.env.port})"


@pytest.fixture
async def boundary(env_factory: Callable[..., Any], sink: Sink) -> Shared:
    """A daemon relaying to a real sink; every notice is sent (follow-ups, no rate limit)."""
    e: Env = await env_factory(
        sink,
        tickets={"acknowledge_followups": True},
        policy={"max_auto_replies_per_hour": 100000,
                "max_auto_replies_per_ticket_per_hour": 100000},
    )  # fmt: skip
    return Shared(e)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.text(max_size=300),
        st.sampled_from(["../../etc/passwd", "/etc/shadow", "..\\..\\boot.ini", "CON", "nul.txt",
                         "COM1.pdf", "lpt9 .tar.gz", "Aux", "bericht.pdf. .",
                         "a\x00b.pdf", "rechnung\u202efdp.exe", "x" * 1000 + ".pdf", ".htaccess",
                         "C:\\Windows\\win.ini", "\r\nBcc: evil@example.org"]),
    )
)  # fmt: skip
def test_attachment_names_never_become_paths(running: Running, name: str) -> None:
    """Whatever a file is called, it is stored by hash in the data dir and shown sanitised."""
    msg = EmailMessage()
    msg["From"] = "a1@a.example"
    msg["To"] = SUPPORT
    msg["Subject"] = "Datei"
    n = next(counter)
    msg["Message-ID"] = f"<f{n}@a.example>"
    msg.set_content("Anbei.")
    msg.add_attachment(f"content {n}".encode(), maintype="application", subtype="octet-stream")
    part = next(iter(msg.iter_attachments()))
    part.set_param("filename", name, header="Content-Disposition", charset="utf-8")
    with smtplib.SMTP("127.0.0.1", running.port, timeout=20) as smtp:
        smtp.send_message(msg)
    rows = read_rows(
        running.data_dir,
        "SELECT f.filename, f.sha256 FROM attachments f JOIN articles a ON a.id = f.article "
        "WHERE a.message_id = ?",
        (f"<f{n}@a.example>",),
    )
    assert len(rows) == 1
    shown, sha = rows[0]
    assert shown
    assert len(shown) <= 200
    assert not any(c in shown for c in "/\\\x00\r\n\u202e")
    assert not shown.startswith(".")
    assert not shown.endswith((".", " "))
    # Windows' rule: the part before the first dot, blanks cut at its end, is no device name.
    assert shown.split(".", 1)[0].rstrip(" ").upper() not in WINDOWS_DEVICES
    if name in ("CON", "nul.txt"):
        assert shown == "_" + name
    root = running.data_dir.resolve()
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root)
        if path.is_file() and path.parent.parent.parent.name == "blobs":
            assert len(path.name) == 64
    assert stored_blob(running.data_dir, sha) is not None
