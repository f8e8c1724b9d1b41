"""The first half of intake, away from the event loop: parse, check the sender, write the files.

None of it needs the write lock or the event loop, and most of it is CPU (parsing) or fsync
waits (the blobs). `Admitter.admit` runs on a worker thread of the daemon, or, with
`smtp.workers` > 0, in one of that many worker processes (`AdmissionPool`), so that parsing
uses a core of its own instead of sharing the event loop's GIL.

A worker process reads only committed data (the sender's registration) on a connection of
its own and writes only blobs (content-addressed, durable before it answers); it never logs:
what it decided travels back and is logged by the daemon.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .authres import verify_sender
from .config import Config
from .files import BlobStore
from .models import AttachmentView
from .parse import ParsedMail, parse_mail
from .route import RoutePolicy, agent_refusal, classify
from .store import DB_NAME, Sender, read_sender

__all__ = [
    "Admission",
    "AdmissionPool",
    "Admitted",
    "Admitter",
    "Envelope",
    "Refused",
    "Unverified",
    "route_policy",
]


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A mail past the sender check, its raw message and attachments on disk (fsync'd)."""

    mail: ParsedMail
    raw_sha256: str
    files: tuple[AttachmentView, ...]


@dataclass(frozen=True, slots=True)
class Unverified:
    """A mail whose sender authentication failed (policy.sender_auth); nothing written."""

    mail: ParsedMail
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A mail refused before anything touched the disk: an unregistered sender, or an
    agent's mail that is not a usable reply (`reason` as route's, `detail` for the reply)."""

    mail: ParsedMail
    reason: str
    detail: str = ""


Admission = Admitted | Unverified | Refused


def route_policy(config: Config) -> RoutePolicy:
    return RoutePolicy(
        own_addresses=config.own_addresses,
        loop_token=config.mail.from_address.casefold(),
        subject_tag=config.tickets.subject_tag,
        reopen_days=config.tickets.reopen_days,
        acknowledge_followups=config.tickets.acknowledge_followups,
        unknown_sender=config.policy.unknown_sender,
        no_contract=config.policy.no_contract,
        max_auto_replies_per_hour=config.policy.max_auto_replies_per_hour,
        max_auto_replies_per_ticket_per_hour=config.policy.max_auto_replies_per_ticket_per_hour,
    )


class Admitter:
    """Parse, check the sender, store the blobs: blocking, for a worker thread or process."""

    def __init__(self, config: Config, *, db_path: Path, blobs: BlobStore) -> None:
        self.config = config
        self.policy = route_policy(config)
        self.db_path = db_path
        self.blobs = blobs
        self._local = threading.local()  # one read-only connection per thread
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def admit(
        self, raw: bytes, envelope: Envelope, *, sender_vouched: bool, now: datetime
    ) -> Admission:
        """`sender_vouched`: an admin released the mail, so the sender check is skipped."""
        mail = parse_mail(raw)
        sender = mail.from_addr
        silent = self.is_silent(mail, envelope)
        if self.config.policy.sender_auth == "authres" and not (silent or sender_vouched):
            verdict = verify_sender(mail, authserv_id=self.config.smtp.authserv_id)
            if not verdict.trusted:
                return Unverified(mail, verdict.reason)
        known = self._sender(sender, now=now) if sender else None
        agent = known.agent if known is not None and not silent else None
        # Refuse unregistered senders before anything touches the disk.
        unknown = known is None or known.user is None
        if (
            self.config.policy.unknown_sender == "reject"
            and agent is None
            and not silent
            and unknown
        ):
            return Refused(mail, "unknown_sender")
        if agent is not None and not self.is_automatic(mail, envelope):
            refused = agent_refusal(mail, self.config.tickets.subject_tag)
            if refused is not None:
                return Refused(mail, refused[0], refused[1])
        raw_blob, *blobs = self.blobs.put_all([raw, *(a.data for a in mail.attachments)])
        files = tuple(
            AttachmentView(att.filename, att.content_type, blob.size, blob.sha256, att.content_id)
            for att, blob in zip(mail.attachments, blobs, strict=True)
        )
        return Admitted(mail, raw_blob.sha256, files)

    def is_silent(self, mail: ParsedMail, envelope: Envelope) -> bool:
        """Bounces and loops are accepted silently even from unknown senders."""
        cls = classify(
            mail, envelope_from=envelope.mail_from, policy=self.policy, own_message_id=False
        )
        return cls.bounce or cls.own_loop

    def is_automatic(self, mail: ParsedMail, envelope: Envelope) -> bool:
        cls = classify(
            mail, envelope_from=envelope.mail_from, policy=self.policy, own_message_id=False
        )
        return cls.automatic

    def _sender(self, address: str, *, now: datetime) -> Sender:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return read_sender(conn, address, now=now)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


# --- worker processes ------------------------------------------------------------------------

_worker: Admitter | None = None


def _start_worker(config: Config) -> None:
    # Ctrl-C reaches the whole process group, and systemd may signal the whole cgroup: the
    # daemon decides when its workers end (it shuts the pool down once mails under way are
    # done), so a signal must not kill one in the middle of a mail.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _worker
    _worker = Admitter(
        config, db_path=config.data_dir / DB_NAME, blobs=BlobStore(config.data_dir / "blobs")
    )


def _ready() -> bool:
    return _worker is not None


def _admit_in_worker(
    raw: bytes, envelope: Envelope, sender_vouched: bool, now: datetime
) -> Admission:
    assert _worker is not None, "worker not started"
    return _worker.admit(raw, envelope, sender_vouched=sender_vouched, now=now)


class AdmissionPool:
    """`workers` processes running `Admitter.admit` (started with `spawn`: the daemon has
    threads, which `fork` must not copy). A worker that dies takes the mails it held with
    it: each is tried once more in a fresh pool, then the error goes to the caller (who
    keeps the mail in the quarantine)."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.config,),
        )

    async def start(self) -> None:
        """Start every worker now (each imports the parser), not at the first mail."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ready) for _ in range(self.workers))
        )

    async def admit(
        self, raw: bytes, envelope: Envelope, *, sender_vouched: bool, now: datetime
    ) -> Admission:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            executor = self._executor
            try:
                return await loop.run_in_executor(
                    executor, _admit_in_worker, raw, envelope, sender_vouched, now
                )
            except BrokenProcessPool:
                if self._executor is executor:  # the first to notice replaces it
                    self._executor = self._new_executor()
                    executor.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def pids(self) -> list[int]:
        """The worker processes' ids (for the benchmark's memory figures)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
