"""Shared test parts: a real SMTP sink, the real daemon on port 0, a CLI runner, a clock,
and `eventually`, the one way the tests wait for something."""

from __future__ import annotations

import asyncio
import email
import email.policy
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosmtplib
import pgcluster
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from pgcluster import PgCluster, pg_cluster, pg_template, pg_url  # noqa: F401

from ticketmail.config import Config, load_config
from ticketmail.daemon import Daemon
from ticketmail.storage.dialect import Conn
from ticketmail.storage.paths import DB_NAME, DatabaseTarget
from ticketmail.storage.readers import open_reader
from ticketmail.storage.store import CustomerRow, UserRow

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
SUPPORT = "support@stueber.de"

T = TypeVar("T")


# --- waiting for events, not for time -----------------------------------------------------------

POLL_SECONDS = 0.05


def _said(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    seconds: float = 10.0,
    what: str | Callable[[], str] = "the expected state",
    every: float = POLL_SECONDS,
) -> T:
    """Wait until `predicate()` (a function or a coroutine function) returns something true;
    return it. Asked every `every` seconds; bounded: after `seconds` an AssertionError names
    `what` (a text, or a function that says what was seen instead)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return cast(T, result)
        if loop.time() >= deadline:
            raise AssertionError(f"{_said(what)}: not within {seconds} s")
        await asyncio.sleep(every)


def eventually_sync(
    predicate: Callable[[], T],
    *,
    seconds: float = 10.0,
    what: str | Callable[[], str] = "the expected state",
    every: float = POLL_SECONDS,
) -> T:
    """`eventually` for tests without an event loop: the same bound, the same message."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_said(what)}: not within {seconds} s")
        time.sleep(every)


# --- clock ------------------------------------------------------------------------------------


class Clock:
    """Real time plus an offset the test moves forward by hand (days, hours, ...)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


# --- SMTP sink ----------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Sink:
    """A real SMTP server on 127.0.0.1 that keeps every mail it receives."""

    received: list[Received] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    answer: str | None = None  # e.g. "451 4.3.0 try later" to refuse every mail

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answer is not None:
            return self.answer
        content = envelope.original_content or b""
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 2.0.0 Ok: queued"

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", decode_data=False),
            host="127.0.0.1",
            port=port,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def wait_for(self, count: int, *, seconds: float = 10.0) -> list[Received]:
        """Wait (bounded) until at least `count` mails arrived; return them all."""
        await eventually(
            lambda: len(self.received) >= count,
            seconds=seconds,
            what=lambda: f"sink got {len(self.received)} mails, expected {count}",
        )
        return list(self.received)


def free_port() -> int:
    """A port nobody listens on (bound once, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    """Something listens on 127.0.0.1:port right now."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.start()
    yield s
    await s.stop()


# --- the backend under test ------------------------------------------------------------------
#
# `TICKETMAIL_TEST_BACKEND=postgres` runs the suite on PostgreSQL (SPEC 10): every data
# directory a test makes gets a database of its own, made from a template that holds the
# schema, and its config says `storage.backend = "postgres"` with the URL in a .env beside it
# (as an admin would keep it), so that the daemon and every CLI process find it.

BACKEND = os.environ.get("TICKETMAIL_TEST_BACKEND", "sqlite")
_databases: dict[Path, str] = {}


def on_postgres() -> bool:
    return BACKEND == "postgres"


def database_url(data_dir: Path) -> str:
    """The PostgreSQL database of one data directory, made on first use."""
    key = data_dir.resolve()
    if key in _lasting:
        return _lasting[key]
    if key not in _databases:
        _databases[key] = fresh_database()
    return _databases[key]


_session: dict[str, Any] = {}  # the session's PgCluster and template (`_backend`)
_lasting: dict[Path, str] = {}  # databases of fixtures wider than one test (`lasting_database`)


def lasting_database(request: pytest.FixtureRequest, data_dir: Path) -> None:
    """On PostgreSQL, for a fixture wider than one test (a module's daemon): `data_dir`'s
    database made now, kept across its tests, dropped when the fixture ends."""
    if not on_postgres():
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = cluster.new_database(request.getfixturevalue("pg_template"))
    key = data_dir.resolve()
    _lasting[key] = cluster.url(name)

    def drop() -> None:
        _lasting.pop(key, None)
        if not cluster.running:
            cluster.start_server()
        cluster.drop_database(name)

    request.addfinalizer(drop)


def _migrate_template(url: str) -> None:
    """The template's schema: ticketmail's own migration, its connection closed after."""
    from ticketmail.storage import postgres

    conn = postgres.connect(url)
    try:
        postgres.migrate(conn)
    finally:
        conn.close()


pgcluster.TEMPLATE_SETUP = _migrate_template


def fresh_database() -> str:
    """A new database holding the schema (a copy of the template); its URL. Dropped at the
    end of the test that made it (`_backend`)."""
    cluster: PgCluster = _session["cluster"]
    if not cluster.running:
        cluster.start_server()  # a test before this one stopped the server and failed
    name = cluster.new_database(_session["template"])
    _session.setdefault("made", []).append(name)
    return cluster.url(name)


@pytest.fixture(autouse=True)
def _backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL: the session's cluster for the test; the databases it made are dropped
    after it (this fixture is torn down last, after its daemons stopped)."""
    if not on_postgres():
        yield
        return
    _session["cluster"] = request.getfixturevalue("pg_cluster")
    _session["template"] = request.getfixturevalue("pg_template")
    yield
    cluster = _session["cluster"]
    made, _session["made"] = _session.get("made", []), []
    _databases.clear()
    if not cluster.running:
        cluster.start_server()
    for name in made:
        cluster.drop_database(name)


def database_target(data_dir: Path) -> DatabaseTarget:
    """The database a test's data directory uses on the backend under test."""
    if on_postgres():
        return DatabaseTarget("postgres", data_dir / DB_NAME, database_url(data_dir))
    return DatabaseTarget("sqlite", data_dir / DB_NAME)


def read_rows(data_dir: Path, sql: str, params: Any = ()) -> list[Any]:
    """Rows of one query on a data directory's database, read-only (either backend)."""
    conn = open_reader(database_target(data_dir))
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def stored_blob(data_dir: Path, sha256: str) -> bytes | None:
    """A stored blob's bytes (a file under blobs/ on SQLite, a row of `blobs` on
    PostgreSQL); None when there is none."""
    if on_postgres():
        rows = read_rows(data_dir, "SELECT data FROM blobs WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None
    path = data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256
    return path.read_bytes() if path.is_file() else None


def stored_blob_count(data_dir: Path) -> int:
    """How many blobs are stored (files, never a crash's `.tmp-` leftovers; or rows)."""
    if on_postgres():
        return int(read_rows(data_dir, "SELECT COUNT(*) FROM blobs")[0][0])
    return sum(1 for p in (data_dir / "blobs").glob("??/??/*") if len(p.name) == 64)


def writer_conn(data_dir: Path) -> Conn:
    """A writer connection to a data directory's database on the backend under test, its
    schema up to date, for tests that run storage functions on it directly (autocommit, as
    the daemon's writer; the caller closes it)."""
    target = database_target(data_dir)
    if target.postgres:
        from ticketmail.storage import postgres

        return postgres.connect(target.url)  # made from the migrated template
    import sqlite3

    from ticketmail.storage._schema import migrate

    conn = sqlite3.connect(target.path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


# --- config, daemon ---------------------------------------------------------------------------


def write_config(
    path: Path, data_dir: Path, relay_port: int | None, **sections: dict[str, Any]
) -> Path:
    """A config.toml for tests: port 0, a temp data dir, fast retries, relay to the sink."""
    base: dict[str, dict[str, Any]] = {
        # workers = 0: admission in the daemon's threads (starting worker processes for
        # every test would double the suite's time); tests/test_workers.py runs the pool.
        "smtp": {"host": "127.0.0.1", "port": 0, "hostname": "ticketmail.test", "workers": 0},
        "storage": {"data_dir": str(data_dir)},
        "relay": {"retry_initial_seconds": 0.2, "retry_max_seconds": 1.0, "poll_seconds": 0.2},
        "log": {"level": "info", "format": "json"},
        # The portal only for tests marked `web` (see env_factory), on a port of its own.
        "web": {"host": "127.0.0.1", "port": 0, "enabled": False},
    }
    if relay_port is not None:
        base["relay"].update({"transport": "smtp", "host": "127.0.0.1", "port": relay_port})
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    if on_postgres():
        base["storage"].setdefault("backend", "postgres")
        if base["storage"]["backend"] == "postgres":
            url = database_url(Path(base["storage"]["data_dir"]))
            dotenv = path.parent / ".env"
            kept = dotenv.read_text("utf-8").splitlines() if dotenv.is_file() else []
            kept = [line for line in kept if not line.startswith("TICKETMAIL_DATABASE_URL=")]
            lines = [*kept, f"TICKETMAIL_DATABASE_URL={url}"]
            dotenv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines: list[str] = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Env:
    """One test's ticketmail: config file, running daemon, clock, sink, CLI."""

    config_path: Path
    config: Config
    daemon: Daemon
    clock: Clock
    sink: Sink | None

    @property
    def port(self) -> int:
        return self.daemon.port

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    async def customer(
        self, number: str, name: str, *, support_until: date | None = None,
        trial_until: date | None = None,
    ) -> None:  # fmt: skip
        assert self.daemon.store is not None
        if support_until is None and trial_until is None:
            support_until = self.clock().date() + timedelta(days=365)
        await self.daemon.store.add_customers(
            [CustomerRow(number, name, support_until, trial_until)], now=self.clock()
        )

    async def user(self, email_addr: str, customer: str, *, name: str = "",
                   lang: str | None = None) -> None:  # fmt: skip
        assert self.daemon.store is not None
        await self.daemon.store.add_users(
            [UserRow(email_addr, customer, name, lang)], now=self.clock()
        )

    async def send(
        self,
        message: EmailMessage | bytes,
        *,
        mail_from: str | None = None,
        rcpt: str = SUPPORT,
    ) -> tuple[int, str]:
        """Send one mail over a real SMTP connection; return the reply to DATA (or RCPT)."""
        return await smtp_send(self.port, message, mail_from=mail_from, rcpt=rcpt)

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, "--config", str(self.config_path), *args)

    async def cli_json(self, *args: str) -> Any:
        result = await self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def queued_in_outbox(data_dir: Path) -> int:
    """Outbox entries still waiting to go out, read from the database (read-only)."""
    ((queued,),) = read_rows(data_dir, "SELECT COUNT(*) FROM outbox WHERE status = 'queued'")
    return int(queued)


async def all_mail_out(env: Env, count: int) -> list[Received]:
    """The sink holds exactly `count` mails, and no more will come: nothing is left queued in
    the outbox, and one more pass of the outbox worker finds nothing to send."""
    sink, worker = env.sink, env.daemon.worker
    assert sink is not None
    assert worker is not None
    await eventually(
        lambda: queued_in_outbox(env.data_dir) == 0,
        what=lambda: f"outbox still holds {queued_in_outbox(env.data_dir)} queued mails",
    )
    assert await worker.run_once() == 0, "a pass of the outbox worker still found mail to send"
    assert len(sink.received) == count, [
        (r.rcpt_tos, str(r.message["Subject"])) for r in sink.received
    ]
    return list(sink.received)


async def smtp_send(
    port: int,
    message: EmailMessage | bytes,
    *,
    mail_from: str | None = None,
    rcpt: str = SUPPORT,
) -> tuple[int, str]:
    raw = (
        message.as_bytes(policy=email.policy.SMTP) if isinstance(message, EmailMessage) else message
    )
    if mail_from is None:
        if isinstance(message, EmailMessage) and message["From"]:
            mail_from = message["From"].addresses[0].addr_spec
        else:
            mail_from = "sender@example.org"
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(mail_from)
        try:
            await client.rcpt(rcpt)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return exc.code, exc.message
        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code, exc.message
        return response.code, response.message
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


def run_cli(*args: str, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the real `ticketmail` command line in a subprocess (bounded by a timeout)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ticketmail", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        input=stdin,
        check=False,
    )


def make_mail(
    sender: str,
    subject: str,
    body: str = "Hallo,\n\nbitte helfen Sie uns.\n",
    *,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = "Sun, 22 Nov 2026 10:00:00 +0100"
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="client.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def env_factory(
    tmp_path: Path, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    """Start the real daemon (port 0) from a config file; every one is stopped at the end.

    Tests marked `web` get the portal too (web.enabled), on a port of its own."""
    started: list[Daemon] = []
    web = request.node.get_closest_marker("web") is not None

    async def factory(sink: Sink | None = None, **sections: dict[str, Any]) -> Env:
        if web:
            sections["web"] = {"enabled": True, **sections.get("web", {})}
        path = write_config(
            tmp_path / f"config{len(started)}.toml",
            tmp_path / "var",
            sink.port if sink is not None else None,
            **sections,
        )
        config = load_config(path, environ={})
        daemon = Daemon(config, clock=clock)
        await daemon.start()
        started.append(daemon)
        return Env(path, config, daemon, clock, sink)

    yield factory
    for daemon in started:
        await daemon.stop(grace=5)


@pytest.fixture
async def env(env_factory: Any, sink: Sink) -> Env:
    """The common case: a daemon relaying to a sink, one institution with a contract."""
    e: Env = await env_factory(sink)
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042", name="Anna Müller", lang="de")
    await e.user("ben@schule.example", "10042", name="Ben Meyer", lang="en")
    return e


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (`CI` set, as .ci/run runs) a skip is a failure: what a test needs (the shared
    corpus beside the repository, systemd-analyze, Chromium) must be there, never assumed."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


# --- what the PostgreSQL run leaves out ---------------------------------------------------------
#
# Tests marked `sqlite_only` are about SQLite's own machinery (its files, WAL, PRAGMAs, the
# migrations of its schema) and have no PostgreSQL counterpart. tests/postgres_pending.txt
# names the tests (files or node ids) not yet passing on PostgreSQL; the run says how many
# it left out, so that the list only ever shrinks in plain sight.

PENDING = REPO / "tests" / "postgres_pending.txt"


def _pending() -> list[str]:
    if not PENDING.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in PENDING.read_text("utf-8").splitlines())
    return [line for line in lines if line]


def _left_out(nodeid: str, pending: list[str]) -> bool:
    return any(nodeid == p or nodeid.startswith((p + "::", p + "[")) for p in pending)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not on_postgres():
        return
    # TICKETMAIL_TEST_PENDING=run: the pending ones too (to see whether they pass now).
    pending = [] if os.environ.get("TICKETMAIL_TEST_PENDING") == "run" else _pending()
    keep: list[pytest.Item] = []
    gone: list[pytest.Item] = []
    for item in items:
        out = item.get_closest_marker("sqlite_only") or _left_out(item.nodeid, pending)
        (gone if out else keep).append(item)
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep
        _session["left_out"] = len(gone)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if on_postgres():
        terminalreporter.write_line(
            f"PostgreSQL run: {_session.get('left_out', 0)} tests left out "
            "(marked sqlite_only, or listed in tests/postgres_pending.txt)"
        )
