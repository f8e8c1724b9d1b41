"""Crash safety: kill -9 at random moments under load; 250 means stored once, confirmations sent.

The daemon runs as a subprocess on a fixed port and relays to a real SMTP sink in the test loop.
Eight senders behave like MTAs: a connection error or a 4xx makes them send the same bytes
again. Meanwhile the daemon is killed with SIGKILL at random moments, during start-up and under
load, and restarted. Afterwards the SQLite file is read directly (read-only) and the blobs are
hashed. Set TICKETMAIL_CRASH_SEED to replay a run's choices (timing still varies).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import (
    Sink,
    database_target,
    eventually,
    free_port,
    make_mail,
    on_postgres,
    smtp_send,
    stored_blob,
    write_config,
)

from ticketmail.storage.dialect import Conn
from ticketmail.storage.outbox import CLAIM_BATCH
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.readers import open_reader
from ticketmail.storage.store import CustomerRow, Store, UserRow

SENDERS = 8
KILLS = 22
EARLY_KILL_SHARE = 0.2  # kills that do not wait for the port: some land in start-up
STOP_SHARE = 0.15  # restarts after a SIGTERM instead: these must not duplicate anything
IN_FLIGHT_SECONDS = 0.5  # a kill this long before a mail reached the sink may have cut it
STOP_SECONDS = 10.0  # bound on a SIGTERM stop under load (the grace is 30 s)
UP_SECONDS = (0.1, 0.8)  # how long the daemon serves before a kill
START_SECONDS = 20.0  # bound on one start-up (port accepting)
KILL_PHASE_SECONDS = 75.0  # bound on the whole kill phase
DELIVER_SECONDS = 40.0  # bound on one sender's retries of one mail
SEND_TIMEOUT_SECONDS = 25.0
DRAIN_SECONDS = 30.0  # bound on the outbox reaching the sink after the last start
ATTACHMENT_SHARE = 0.3
FOLLOWUP_SHARE = 0.5
SHARED_ATTACHMENT = bytes(range(256)) * 40  # the same file in many mails: one blob
TICKET_REPLY = re.compile(r"Ok: ticket (\d+)")


@dataclass
class Mail:
    """One mail as its sender holds it: the same bytes on every attempt."""

    sender: str
    message_id: str
    subject: str
    raw: bytes
    followup_of: int | None
    attachment: bytes | None
    attempts: int = 0
    code: int | None = None
    text: str = ""

    @property
    def ticket(self) -> int | None:
        match = TICKET_REPLY.search(self.text) if self.code == 250 else None
        return int(match.group(1)) if match else None


@dataclass
class DaemonProcess:
    """`ticketmail serve` as a subprocess that the test kills and restarts."""

    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0
    early_kills: int = 0
    stop_seconds: list[float] = field(default_factory=list)
    killed_at: list[float] = field(default_factory=list)
    stopped_at: list[float] = field(default_factory=list)
    starts: int = 0
    start_seconds: list[float] = field(default_factory=list)

    def spawn(self) -> None:
        assert self.proc is None
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
        environ.pop("NOTIFY_SOCKET", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ticketmail", "--config", str(self.config), "serve"],
                stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=self.config.parent,
            )  # fmt: skip
        self.starts += 1

    async def start(self) -> None:
        """Spawn and wait (bounded) until the port greets."""
        began = time.monotonic()
        self.spawn()
        await self.wait_accepting()
        self.start_seconds.append(time.monotonic() - began)

    async def wait_accepting(self) -> None:
        await eventually(
            self._greets, seconds=START_SECONDS, what=f"daemon accepting on {self.port}"
        )

    async def _greets(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited on its own ({self.proc.returncode}):\n{self.tail()}"
            )
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), timeout=2
            )
        except (OSError, TimeoutError):
            return False
        try:
            greeting = await asyncio.wait_for(reader.readline(), timeout=5)
        except (OSError, TimeoutError):
            greeting = b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return greeting.startswith(b"220")

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited on its own ({self.proc.returncode}):\n{self.tail()}"
            )
        self.proc.send_signal(signal.SIGKILL)
        self.killed_at.append(time.monotonic())
        await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None
        self.kills += 1

    async def terminate(self) -> None:
        """SIGTERM: must end with status 0, within STOP_SECONDS even under load."""
        assert self.proc is not None
        began = time.monotonic()
        self.stopped_at.append(began)
        self.proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(self.proc.wait, STOP_SECONDS)
        self.stop_seconds.append(time.monotonic() - began)
        self.proc = None
        assert status == 0, f"SIGTERM ended with {status}:\n{self.tail()}"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class TimedSink(Sink):
    """The conftest sink, noting when each mail arrived (to tie duplicates to kills)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, list[float]] = {}

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        message_id = _message_id(envelope.original_content or b"")
        self.arrivals.setdefault(message_id, []).append(time.monotonic())
        return reply


def _build(
    rng: random.Random, sender: str, index: int, number: int, followup_of: int | None
) -> Mail:
    token = rng.getrandbits(64)
    message_id = f"<crash.{index}.{number}.{token:016x}@client.example>"
    if followup_of is None:
        subject = f"Crash {index}-{number}: Drucker {token:x}"
    else:
        subject = f"Re: [Ticket#{followup_of}] Crash {index}-{number} {token:x}"
    body = f"Hallo,\n\nMail {number} von Sender {index}.\n" + "Noch eine Zeile.\n" * rng.randint(
        1, 200
    )
    msg = make_mail(sender, subject, body, message_id=message_id)
    attachment = None
    if rng.random() < ATTACHMENT_SHARE:
        if rng.random() < 0.3:
            attachment = SHARED_ATTACHMENT
        else:
            attachment = rng.randbytes(rng.randint(1_000, 48_000))
        msg.add_attachment(
            attachment,
            maintype="application",
            subtype="octet-stream",
            filename=f"protokoll-{index}-{number}.bin",
        )
    raw = msg.as_bytes(policy=email.policy.SMTP)
    return Mail(sender, message_id, subject, raw, followup_of, attachment)


async def _deliver(mail: Mail, port: int, rng: random.Random) -> None:
    """Send like an MTA: retry the same bytes on connection errors and 4xx, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVER_SECONDS
    while True:
        mail.attempts += 1
        try:
            code, text = await asyncio.wait_for(
                smtp_send(port, mail.raw, mail_from=mail.sender), timeout=SEND_TIMEOUT_SECONDS
            )
        except (OSError, aiosmtplib.SMTPException, TimeoutError) as exc:
            code, text = None, f"{type(exc).__name__}: {exc}"
        mail.text = text
        if code is not None and not 400 <= code < 500:
            mail.code = code
            return
        if loop.time() >= deadline:
            return  # given up: the sender still holds it
        await asyncio.sleep(rng.uniform(0.05, 0.25))


async def _sender(index: int, port: int, seed: int, stop: asyncio.Event, mails: list[Mail]) -> None:
    rng = random.Random(seed * 100 + index)
    sender = f"user{index}@schule.example"
    confirmed: list[int] = []
    number = 0
    while not stop.is_set():
        number += 1
        followup_of = None
        if confirmed and rng.random() < FOLLOWUP_SHARE:
            followup_of = rng.choice(confirmed)
        mail = _build(rng, sender, index, number, followup_of)
        mails.append(mail)
        await _deliver(mail, port, rng)
        if followup_of is None and mail.ticket is not None:
            confirmed.append(mail.ticket)
        await asyncio.sleep(rng.uniform(0, 0.05))


async def _killer(daemon: DaemonProcess, rng: random.Random, stop: asyncio.Event) -> None:
    """Kill at random moments, restart each time; the last start stays up."""
    deadline = time.monotonic() + KILL_PHASE_SECONDS
    try:
        while daemon.kills < KILLS and time.monotonic() < deadline:
            choice = rng.random()
            if choice < EARLY_KILL_SHARE:
                daemon.spawn()
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                daemon.early_kills += 1
                await daemon.kill()
                continue
            await daemon.start()
            await asyncio.sleep(rng.uniform(*UP_SECONDS))
            if choice > 1 - STOP_SHARE:
                await daemon.terminate()
            else:
                await daemon.kill()
        await daemon.start()
    finally:
        stop.set()


def _steady_port(rng: random.Random) -> int:
    """A free port below the kernel's ephemeral range, else one from free_port().

    The daemon is down for a moment at every restart; a port from the ephemeral range could
    meanwhile be handed to one of the thousand client connections of this test (or another
    test's), and the restart would then fail to bind for reasons that are not ticketmail's.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    for _ in range(50):
        port = rng.randrange(max(low - 12_000, 1024), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def _open_db(data_dir: Path) -> Conn:
    """A read-only connection to the data directory's database (either backend)."""
    return open_reader(database_target(data_dir))


async def _drain(db_dir: Path, sink: Sink) -> None:
    """Wait (bounded) until no outbox entry is queued and the sink saw every one of them."""

    def drained() -> bool:
        db = _open_db(db_dir)
        try:
            rows = db.execute("SELECT status, message_id FROM outbox").fetchall()
        finally:
            db.close()
        seen = {_message_id(r.raw) for r in sink.received}
        return all(r["status"] != "queued" and r["message_id"] in seen for r in rows)

    with contextlib.suppress(AssertionError):  # the checks below say what is missing
        await eventually(drained, seconds=DRAIN_SECONDS, what="outbox drained", every=0.2)


def _message_id(raw: bytes) -> str:
    headers = email.message_from_bytes(raw, policy=email.policy.default)
    return str(headers["Message-ID"] or "").strip()


def _blob_ok(data_dir: Path, sha256: str | None, size: int | None = None) -> bool:
    if sha256 is None:
        return False
    data = stored_blob(data_dir, sha256)
    if data is None:
        return False
    return hashlib.sha256(data).hexdigest() == sha256 and (size is None or len(data) == size)


async def _register(
    data_dir: Path, database: DatabaseTarget | None = None, senders: int = SENDERS
) -> None:
    """One institution with a contract and one registered user per sender, before any start
    (on `database`, else the data directory's on the backend under test)."""
    store = await Store.open(data_dir, database or database_target(data_dir))
    try:
        now = datetime.now(UTC)
        await store.add_customers(
            [CustomerRow("10042", "Gymnasium Musterstadt", date(2099, 12, 31))], now=now
        )
        await store.add_users(
            [
                UserRow(f"user{i}@schule.example", "10042", f"User {i}", "de")
                for i in range(senders)
            ],
            now=now,
        )
    finally:
        await store.close()


@dataclass
class Findings:
    """What the database and the sink hold after the run; every list should stay empty."""

    stored: int = 0
    stored_without_250: int = 0
    orphan_temp_files: int = 0  # a blob write cut by a kill: garbage, never referenced
    unreferenced_blobs: int = 0  # blobs written before a commit that a kill prevented
    tickets: int = 0
    queued: int = 0  # outbox entries: confirmations queued with their tickets
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _check_store(data_dir: Path, mails: list[Mail], sink: Sink) -> tuple[Findings, Counter[str]]:
    found = Findings()
    db = _open_db(data_dir)
    try:
        # SQLite's check of its file after the kills (PostgreSQL recovers on its own).
        if not on_postgres() and db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            found.problem("integrity_check failed")
        for mail in mails:
            messages = db.execute(
                "SELECT id, ticket FROM messages WHERE message_id = ?", (mail.message_id,)
            ).fetchall()
            articles = db.execute(
                "SELECT id, ticket, message, raw_sha256 FROM articles WHERE message_id = ?",
                (mail.message_id,),
            ).fetchall()
            if len(messages) > 1 or len(articles) > 1:
                found.problem(
                    f"{mail.message_id}: stored {len(messages)} messages, {len(articles)} articles"
                )
            if articles:
                found.stored += 1
                found.stored_without_250 += mail.code != 250
            if mail.code != 250:
                continue  # may be missing: the sender still holds it
            if len(messages) != 1 or len(articles) != 1:
                found.problem(
                    f"{mail.message_id} got 250 ({mail.text}) after {mail.attempts} attempts but "
                    f"is stored as {len(messages)} messages, {len(articles)} articles"
                )
                continue
            article = articles[0]
            if article["message"] != messages[0]["id"] or article["ticket"] != mail.ticket:
                found.problem(
                    f"{mail.message_id}: article in ticket {article['ticket']}, "
                    f"reply said {mail.text!r}"
                )
            if mail.followup_of is not None and mail.ticket != mail.followup_of:
                found.problem(f"{mail.message_id}: follow-up of {mail.followup_of} went elsewhere")
            if not _blob_ok(data_dir, article["raw_sha256"]):
                found.problem(f"{mail.message_id}: raw blob missing or corrupt")
            if hashlib.sha256(mail.raw).hexdigest() != article["raw_sha256"]:
                found.problem(f"{mail.message_id}: raw blob is not the bytes sent")
            files = db.execute(
                "SELECT sha256, size FROM attachments WHERE article = ?", (article["id"],)
            ).fetchall()
            expected = (
                [] if mail.attachment is None else [hashlib.sha256(mail.attachment).hexdigest()]
            )
            if [f["sha256"] for f in files] != expected:
                found.problem(f"{mail.message_id}: attachments {list(map(tuple, files))}")
        # Nothing half-written, whoever wrote it.
        for row in db.execute(
            "SELECT number FROM tickets t WHERE NOT EXISTS "
            "(SELECT 1 FROM articles a WHERE a.ticket = t.number)"
        ):
            found.problem(f"ticket {row[0]} has no article")
        for row in db.execute("SELECT id, message_id, raw_sha256 FROM articles"):
            if not _blob_ok(data_dir, row["raw_sha256"]):
                found.problem(f"article {row['id']} ({row['message_id']}): raw blob missing")
        for row in db.execute("SELECT id, article, sha256, size FROM attachments"):
            if not _blob_ok(data_dir, row["sha256"], row["size"]):
                found.problem(f"attachment {row['id']} of article {row['article']}: blob missing")
        for row in db.execute(
            "SELECT m.id, m.message_id FROM messages m WHERE m.ticket IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM articles a WHERE a.message = m.id)"
        ):
            found.problem(f"message {row['id']} ({row['message_id']}) has no article")
        # Each new ticket's confirmation was queued in the same transaction as the ticket.
        unconfirmed = db.execute(
            "SELECT t.number, (SELECT COUNT(*) FROM outbox o WHERE o.ticket = t.number "
            "AND o.kind = 'ticket_created') AS n FROM tickets t"
        ).fetchall()
        for row in unconfirmed:
            if row["n"] != 1:
                found.problem(f"ticket {row['number']} has {row['n']} confirmations queued")
        for row in db.execute("SELECT id, error FROM quarantine"):
            found.problem(f"quarantine entry {row['id']}: {row['error']}")
        # Every queued confirmation reached the sink at least once.
        at_sink = Counter(_message_id(r.raw) for r in sink.received)
        outbox = db.execute("SELECT id, status, message_id, last_error FROM outbox").fetchall()
        found.queued = len(outbox)
        found.tickets = db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        for row in outbox:
            if row["status"] != "sent" or row["message_id"] not in at_sink:
                found.problem(
                    f"outbox {row['id']} {row['status']} ({row['last_error']}), "
                    f"{at_sink[row['message_id']]} at the sink"
                )
        strangers = set(at_sink) - {r["message_id"] for r in outbox}
        if strangers:
            found.problem(f"the sink got mail the outbox never held: {sorted(strangers)[:5]}")
        referenced = {
            row[0]
            for row in db.execute(
                "SELECT raw_sha256 FROM articles UNION SELECT sha256 FROM attachments "
                "UNION SELECT raw_sha256 FROM messages UNION SELECT raw_sha256 FROM quarantine"
            )
        }
    finally:
        db.close()
    for path in (data_dir / "blobs").rglob("*"):
        if path.name.startswith(".tmp-"):
            found.orphan_temp_files += 1
        elif path.is_file() and path.name not in referenced:
            found.unreferenced_blobs += 1
    return found, at_sink


def _unexplained_duplicates(
    sink: TimedSink, killed_at: list[float], stopped_at: list[float]
) -> list[str]:
    """A confirmation may arrive twice only if a kill fell between the two arrivals.

    Or just before the first: the daemon wrote the mail and was killed before it read the
    sink's 250, and the sink (in this process) noted the arrival a moment after the kill.
    """
    unexplained = []
    for message_id, times in sink.arrivals.items():
        for first, again in itertools.pairwise(times):
            if not any(first - IN_FLIGHT_SECONDS < kill < again for kill in killed_at):
                kills = [round(k - first, 3) for k in killed_at if abs(k - first) < 5]
                stops = [round(t - first, 3) for t in stopped_at if abs(t - first) < 5]
                unexplained.append(
                    f"{message_id} sent twice with no kill in between (again after "
                    f"{again - first:.3f} s; kills at {kills} s, SIGTERMs at {stops} s "
                    "from the first arrival)"
                )
    return unexplained


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "worker-processes"])
async def test_kill_9_loses_no_accepted_mail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    """Under kill -9 at random moments every mail answered 250 is stored exactly once and whole
    (with admission in the daemon's threads, and in worker processes as shipped)."""
    began = time.monotonic()
    seed = int(os.environ.get("TICKETMAIL_CRASH_SEED") or time.time_ns() % 1_000_000_007)
    data_dir = tmp_path / "var"
    sink = TimedSink()
    await sink.start()
    port = _steady_port(random.Random(seed))
    config = write_config(
        tmp_path / "config.toml",
        data_dir,
        sink.port,
        smtp={"port": port, "workers": workers},
        relay={"retry_initial_seconds": 0.2, "poll_seconds": 0.2, "timeout_seconds": 5.0},
        # Every new ticket is confirmed: no sender runs into the auto-reply rate limit.
        policy={
            "max_auto_replies_per_hour": 100_000,
            "max_auto_replies_per_ticket_per_hour": 100_000,
        },
    )
    await _register(data_dir)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    mails: list[Mail] = []
    stop = asyncio.Event()
    senders = [asyncio.create_task(_sender(i, port, seed, stop, mails)) for i in range(SENDERS)]
    try:
        await _killer(daemon, random.Random(seed), stop)
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*senders), timeout=DELIVER_SECONDS + 10)
        await _drain(data_dir, sink)
        await daemon.terminate()
        found, at_sink = _check_store(data_dir, mails, sink)
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        daemon.cleanup()
        await sink.stop()

    log = daemon.log.read_text(encoding="utf-8", errors="replace")
    accepted = [m for m in mails if m.code == 250]
    refused = [m for m in mails if m.code is not None and m.code != 250]
    given_up = [m for m in mails if m.code is None]
    duplicates = sum(n - 1 for n in at_sink.values())
    figures = {
        "seed": seed,
        "kills": daemon.kills,
        "kills not waiting for the port": daemon.early_kills,
        "SIGTERM stops": len(daemon.stop_seconds),
        "slowest SIGTERM stop s": round(max(daemon.stop_seconds), 2),
        "daemon starts": daemon.starts,
        "mails sent": len(mails),
        "with attachment": sum(m.attachment is not None for m in mails),
        "follow-ups": sum(m.followup_of is not None for m in mails),
        "SMTP attempts": sum(m.attempts for m in mails),
        "250s": len(accepted),
        "stored": found.stored,
        "stored, no 250 seen": found.stored_without_250,
        "given up (no 250)": len(given_up),
        "retries answered as duplicate": log.count('"event": "mail_duplicate"'),
        "tickets": found.tickets,
        "confirmations queued": found.queued,
        "confirmations at sink": sum(at_sink.values()),
        "duplicates at sink": duplicates,
        "orphan blob temp files": found.orphan_temp_files,
        "unreferenced blobs": found.unreferenced_blobs,
        "median start-up s": round(sorted(daemon.start_seconds)[len(daemon.start_seconds) // 2], 2),
        "kill phase s": round(killed_at - began, 1),
        "runtime s": round(time.monotonic() - began, 1),
    }
    with capsys.disabled():
        print("\ncrash test: " + ", ".join(f"{k}: {v}" for k, v in figures.items()))
    assert daemon.kills >= 20, f"only {daemon.kills} kills within {KILL_PHASE_SECONDS}s"
    assert not refused, [(m.message_id, m.code, m.text) for m in refused[:5]]
    assert not given_up, [(m.message_id, m.attempts, m.text) for m in given_up[:5]]
    assert not found.problems, "\n".join(found.problems[:30])
    # The worker sends one mail at a time and marks each sent while the next goes out (the
    # marks of a claim committed before the next claim): a kill repeats at most the mails of
    # the claim under way whose marks were not yet committed, and every repeat follows a kill.
    assert not _unexplained_duplicates(sink, daemon.killed_at, daemon.stopped_at)
    assert duplicates <= CLAIM_BATCH * daemon.kills
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
