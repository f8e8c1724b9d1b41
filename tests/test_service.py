"""ticketmail as a systemd service: the notify protocol, SIGTERM, and the shipped unit file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import (
    REPO,
    SUPPORT,
    Sink,
    eventually_sync,
    make_mail,
    on_postgres,
    read_rows,
    run_cli,
    smtp_send,
)
from service_support import SENDER, STOP_SECONDS, Service, Services, StartService

from ticketmail._sdnotify import watchdog_interval
from ticketmail.storage.paths import DB_NAME

WATCHDOG_USEC = 2_000_000  # pings every second (half the timeout)
START_SECONDS = 30.0
UNIT = REPO / "systemd" / "ticketmail.service"


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start the test's daemon: one registered user, NOTIFY_SOCKET and WATCHDOG_USEC set.

    `start_service(relay_port=None, **sections)`: config sections as write_config takes them.
    """
    services = Services(tmp_path, watchdog_usec=WATCHDOG_USEC)
    yield services.start
    services.close()


@pytest.fixture
def service(start_service: StartService) -> Service:
    """A daemon with one registered user, NOTIFY_SOCKET and WATCHDOG_USEC set, not yet READY."""
    return start_service()


# --- a raw SMTP client, to stop half-way through DATA --------------------------------------


def _reply(conn: socket.socket) -> str:
    """One complete (possibly multi-line) SMTP reply; '' when the server closed the channel."""
    data = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except ConnectionResetError:
            return data.decode("ascii", errors="replace")
        if not chunk:
            return data.decode("ascii", errors="replace")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and re.match(rb"^\d{3} ", lines[-2]):
            return data.decode("ascii", errors="replace")


def _command(conn: socket.socket, line: str) -> str:
    conn.sendall(line.encode("ascii") + b"\r\n")
    return _reply(conn)


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    greeting = _reply(conn)
    assert greeting.startswith("220"), greeting
    return conn


def _open_data(port: int, subject: str) -> tuple[socket.socket, bytes]:
    """A session that has sent DATA; returns it and the mail's bytes, none of them sent yet."""
    conn = _connect(port)
    assert _command(conn, "EHLO client.example").startswith("250")
    assert _command(conn, f"MAIL FROM:<{SENDER}>").startswith("250")
    assert _command(conn, f"RCPT TO:<{SUPPORT}>").startswith("250")
    assert _command(conn, "DATA").startswith("354")
    raw = make_mail(f"Anna <{SENDER}>", subject, "Hallo,\n\n" + "Zeile\n" * 200).as_bytes()
    return conn, raw.replace(b"\n", b"\r\n")


def _ready(service: Service) -> None:
    service.notify.wait_for("READY=1", seconds=START_SECONDS)


def _refuses_connections(port: int, *, seconds: float) -> bool:
    """True once a connect is refused (bounded); a session opened meanwhile gets only 421."""

    def refused() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                assert not _reply(conn).startswith("220"), "a new session was greeted"
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:  # queued as the listener closed: not greeted either
            pass
        return False

    return eventually_sync(refused, seconds=seconds, what=f"connects to port {port} refused")


def _event(service: Service, name: str) -> str:
    """The daemon's first log line of event `name` (JSON lines), or ''."""
    tag = f'"event": "{name}"'
    return next((line for line in service.log_text().splitlines() if tag in line), "")


def _listed(config: Path, noun: str) -> list[dict[str, object]]:
    result = run_cli("--config", str(config), noun, "list", "--json")
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, object]] = json.loads(result.stdout)
    return entries


def _tickets(config: Path) -> list[dict[str, object]]:
    return _listed(config, "ticket")


# --- the notify protocol -------------------------------------------------------------------


def test_ready_is_sent_only_once_the_port_accepts(service: Service) -> None:
    """READY=1 comes after the SMTP port is bound: a connect right after it is greeted."""
    _ready(service)
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as conn:
        assert _reply(conn).startswith("220")
    ready = next(m for m in service.notify.messages if "READY=1" in m.splitlines())
    assert f"STATUS=accepting mail on 127.0.0.1:{service.port}" in ready.splitlines()


def test_watchdog_pings_arrive_while_running(service: Service) -> None:
    """With WATCHDOG_USEC set for this process, WATCHDOG=1 arrives every half timeout."""
    _ready(service)
    started = time.monotonic()
    service.notify.wait_for("WATCHDOG=1", seconds=8, count=2)
    # Two pings at a one-second interval: not a burst, not slower than the timeout.
    assert time.monotonic() - started < WATCHDOG_USEC / 1_000_000 * 2 + 2


def test_watchdog_interval_is_half_the_timeout_for_this_process_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ping interval is half of WATCHDOG_USEC; none for another WATCHDOG_PID or zero."""
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


def test_sigterm_says_stopping_and_exits_zero(service: Service) -> None:
    """SIGTERM sends STOPPING=1, closes the database and ends with exit status 0."""
    _ready(service)
    service.signal(signal.SIGTERM)
    service.notify.wait_for("STOPPING=1", seconds=STOP_SECONDS)
    assert service.wait() == 0, service.log_text()
    log = service.log_text()
    assert "daemon_stopped" in log
    assert "Traceback" not in log
    # Closed cleanly: the last connection checkpointed the WAL away.
    assert not (service.config.parent / "var" / f"{DB_NAME}-wal").exists()


# --- shutdown ------------------------------------------------------------------------------


def test_sigterm_lets_a_mail_in_data_finish_with_250(service: Service) -> None:
    """After SIGTERM no new session is greeted, idle ones get 421, a mail in DATA gets its 250."""
    _ready(service)
    conn, raw = _open_data(service.port, "Mitten im DATA")
    idle = _connect(service.port)
    try:
        assert _command(idle, "EHLO idle.example").startswith("250")
        conn.sendall(raw[: len(raw) // 2])
        service.signal(signal.SIGTERM)
        service.notify.wait_for("STOPPING=1", seconds=STOP_SECONDS)
        assert _refuses_connections(service.port, seconds=5)
        assert _reply(idle).startswith("421 4.3.2")
        assert service.proc.poll() is None, "stopped before the mail in DATA was finished"
        conn.sendall(raw[len(raw) // 2 :] + b"\r\n.\r\n")
        reply = _reply(conn)
        assert reply.startswith("250 2.0.0 Ok: ticket 100001"), reply
    finally:
        conn.close()
        idle.close()
    assert service.wait() == 0, service.log_text()
    assert [t["subject"] for t in _tickets(service.config)] == ["Mitten im DATA"]


def test_second_sigterm_ends_at_once(service: Service) -> None:
    """A second SIGTERM ends the daemon without waiting out the grace; the cut mail is not kept."""
    _ready(service)
    conn, raw = _open_data(service.port, "Abgebrochen")
    try:
        conn.sendall(raw[: len(raw) // 2])
        service.signal(signal.SIGTERM)
        service.notify.wait_for("STOPPING=1", seconds=STOP_SECONDS)
        # The daemon's first shutdown round ends with its word that it waits for the mail in
        # DATA: by then that session has been told nothing and is open, the daemon running.
        waiting = eventually_sync(
            lambda: _event(service, "shutdown_waiting"),
            seconds=STOP_SECONDS,
            what="the daemon waiting for the mail in DATA",
        )
        assert '"mails": 1' in waiting, waiting
        assert select.select([conn], [], [], 0)[0] == [], "the first SIGTERM cut the mail in DATA"
        assert service.proc.poll() is None, "the first SIGTERM did not wait for the mail in DATA"
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(seconds=10) == 0, service.log_text()
        assert time.monotonic() - started < 5
        conn.settimeout(5)
        assert not _reply(conn).startswith("250")
    finally:
        conn.close()
    log = service.log_text()
    assert "daemon_stop_forced" in log
    assert '"shutdown_grace_over"' not in log  # the first SIGTERM was still waiting
    assert "Traceback" not in log
    assert _tickets(service.config) == []
    data_dir = service.config.parent / "var"
    if not on_postgres():  # SQLite's file after the forced stop (PostgreSQL keeps its own)
        db = sqlite3.connect(data_dir / DB_NAME)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            db.close()
    assert [tuple(r) for r in read_rows(data_dir, "SELECT COUNT(*) FROM messages")] == [(0,)]


def test_grace_over_cuts_an_unfinished_mail_and_keeps_the_finished(
    start_service: StartService,
) -> None:
    """With smtp.shutdown_grace_seconds = 1 a DATA never finished is cut after 1 s, not stored."""
    grace = 1.0
    service = start_service(smtp={"shutdown_grace_seconds": grace})
    _ready(service)
    done, raw = _open_data(service.port, "Vor dem Signal fertig")
    try:
        done.sendall(raw + b"\r\n.\r\n")
        assert _reply(done).startswith("250 2.0.0 Ok: ticket 100001")
        assert _command(done, "QUIT").startswith("221")
    finally:
        done.close()
    conn, raw = _open_data(service.port, "Nie fertig")
    try:
        conn.sendall(raw[: len(raw) // 2])  # and never the rest, nor the final dot
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(seconds=grace + 10) == 0, service.log_text()
        took = time.monotonic() - started
        conn.settimeout(5)
        assert not _reply(conn).startswith("250")
    finally:
        conn.close()
    assert grace - 0.1 <= took < grace + 4, f"stopped after {took:.1f}s with a {grace}s grace"
    log = service.log_text()
    assert '"shutdown_grace_over"' in log
    assert '"grace_seconds": 1.0' in log
    assert "Traceback" not in log
    assert [t["subject"] for t in _tickets(service.config)] == ["Vor dem Signal fertig"]
    rows = read_rows(service.config.parent / "var", "SELECT COUNT(*) FROM messages")
    assert [tuple(r) for r in rows] == [(1,)]


@dataclass
class SlowSink(Sink):
    """A relay that takes `delay` seconds to answer DATA; counts the DATA it began."""

    delay: float = 3.0
    begun: int = 0
    first_begun: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.begun += 1
        self.first_begun.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


async def test_sigterm_stops_the_outbox_worker_between_attempts(
    start_service: StartService,
) -> None:
    """SIGTERM during a slow delivery: that one is finished and marked sent, no next one begun."""
    sink = SlowSink(delay=4.0)
    await sink.start()
    try:
        service = start_service(relay_port=sink.port, smtp={"shutdown_grace_seconds": 20.0})
        await asyncio.to_thread(_ready, service)
        for n in range(3):
            code, text = await smtp_send(service.port, make_mail(SENDER, f"Anfrage {n}"))
            assert (code, text) == (250, f"2.0.0 Ok: ticket {100001 + n}")
        await asyncio.wait_for(sink.first_begun.wait(), timeout=10)
        assert sink.received == [], "the first delivery ended before SIGTERM: sink too fast"
        started = asyncio.get_running_loop().time()
        service.signal(signal.SIGTERM)
        status = await asyncio.to_thread(service.wait, 20.0)
        took = asyncio.get_running_loop().time() - started
    finally:
        await sink.stop()
    assert status == 0, service.log_text()
    # It waited for the delivery under way (about `delay`), and began no other one.
    assert took < sink.delay * 2, f"stopped after {took:.1f}s"
    assert (sink.begun, len(sink.received)) == (1, 1)
    # The sink is gone: nothing needs the loop while the CLI runs.
    statuses = sorted(str(e["status"]) for e in _listed(service.config, "outbox"))
    assert statuses == ["queued", "queued", "sent"]
    assert "Traceback" not in service.log_text()


# --- the unit file -------------------------------------------------------------------------


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_has_the_hardening_the_issue_asks_for() -> None:
    """The unit is Type=notify with a watchdog, its own user, systemd's dirs and a sandbox."""
    unit = _unit_settings(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "ticketmail",
        "StateDirectory": "ticketmail",
        "ConfigurationDirectory": "ticketmail",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "SystemCallFilter": "@system-service",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={value} missing in {UNIT.name}"
    for key in ("WatchdogSec", "MemoryMax", "RestrictAddressFamilies", "ExecStart"):
        assert key in unit, f"{key}= missing in {UNIT.name}"
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert all(f.startswith("-") for f in unit["EnvironmentFile"])
    assert unit["ExecStart"][0].endswith(" serve")
    # `systemctl reload` sends SIGHUP: templates and the TLS certificate are read again.
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # systemd must not kill the daemon before its 30 s shutdown grace is over.
    assert unit["TimeoutStopSec"] == ["45s"]
    # The descriptors the daemon raises its soft limit to (SPEC 8.4): far above the web's cap.
    assert unit.get("LimitNOFILE") == ["65536"], f"LimitNOFILE=65536 missing in {UNIT.name}"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit, run against a ticketmail that exists here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    executable = Path(sys.executable).parent / "ticketmail"
    assert executable.is_file(), f"{executable}: the venv's ticketmail script is missing"
    text = UNIT.read_text(encoding="utf-8")
    assert "/opt/ticketmail/bin/ticketmail" in text
    unit = tmp_path / "ticketmail.service"
    unit.write_text(text.replace("/opt/ticketmail/bin/ticketmail", str(executable)), "utf-8")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # Unknown keys and bad values are only warnings (status 0): no output at all is the bar.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
