"""Properties over a running daemon: institutions never reach each other's tickets, and
attachment names never become paths."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SUPPORT, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.store import DB_NAME, CustomerRow, UserRow

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
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The real daemon in a thread of its own (file relay), with two institutions' tickets."""
    root = tmp_path_factory.mktemp("boundary")
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
    db = sqlite3.connect(f"file:{running.data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        (customer,) = db.execute(
            "SELECT customer FROM tickets WHERE number = ?", (number,)
        ).fetchone()
        wrong = db.execute(
            "SELECT a.id FROM articles a JOIN tickets t ON t.number = a.ticket "
            "JOIN users u ON u.email = a.sender WHERE u.customer != t.customer"
        ).fetchall()
    finally:
        db.close()
    assert customer == own
    assert wrong == []


def test_no_sent_mail_shows_another_institutions_ticket(running: Running) -> None:
    """No confirmation to a user of one institution carries the other's subjects or texts."""
    deadline = 100
    sent_dir = running.data_dir / "sent"
    for _ in range(deadline):
        db = sqlite3.connect(f"file:{running.data_dir / DB_NAME}?mode=ro", uri=True)
        try:
            (queued,) = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'queued'").fetchone()
        finally:
            db.close()
        if queued == 0:
            break
        threading.Event().wait(0.1)
    mails = sorted(sent_dir.glob("*.eml"))
    assert mails, "no confirmation was sent at all"
    for path in mails:
        raw = path.read_bytes().decode("utf-8", errors="replace")
        recipient = next(line.split()[-1].strip("<>") for line in raw.splitlines()
                         if line.startswith("To:"))  # fmt: skip
        other = "B" if USERS[recipient] == "A" else "A"
        assert f"SECRET-{other}" not in raw
        assert f"TEXT-{other}" not in raw


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.text(max_size=300),
        st.sampled_from(["../../etc/passwd", "/etc/shadow", "..\\..\\boot.ini", "CON", "nul.txt",
                         "a\x00b.pdf", "rechnung\u202efdp.exe", "x" * 1000 + ".pdf", ".htaccess",
                         "C:\\Windows\\win.ini", "\r\nBcc: evil@example.org"]),
    )
)  # fmt: skip
def test_attachment_names_never_become_paths(running: Running, name: str) -> None:
    """Whatever a file is called, it is stored by hash inside the data dir and shown sanitised."""
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
    db = sqlite3.connect(f"file:{running.data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT f.filename, f.sha256 FROM attachments f JOIN articles a ON a.id = f.article "
            "WHERE a.message_id = ?",
            (f"<f{n}@a.example>",),
        ).fetchall()
    finally:
        db.close()
    assert len(rows) == 1
    shown, sha = rows[0]
    assert shown
    assert len(shown) <= 200
    assert not any(c in shown for c in "/\\\x00\r\n\u202e")
    assert not shown.startswith(".")
    root = running.data_dir.resolve()
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root)
        if path.is_file() and path.parent.parent.parent.name == "blobs":
            assert len(path.name) == 64
    assert (root / "blobs" / sha[:2] / sha[2:4] / sha).is_file()
