"""The first half of intake, away from the event loop: parse, check the sender, write the files.

None of it needs the database writer or the event loop, and most of it is CPU (parsing) and
writing the blobs. `Admitter.admit` runs on a worker thread of the daemon, or, with
`smtp.workers` > 0, in one of that many worker processes (`AdmissionPool`), so that parsing
uses a core of its own instead of sharing the event loop's GIL.

A worker process reads only committed data (the sender's registration) on a connection of
its own and writes only blobs (content-addressed; written, and made durable by intake's
write before anything refers to them, see `BlobStore.put_all`); it never logs:
what it decided travels back and is logged by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from ticketmail.config import Config
from ticketmail.errors import TicketmailError
from ticketmail.intake.route import RoutePolicy, agent_refusal, classify
from ticketmail.mail.authres import verify_sender
from ticketmail.mail.parse import ParsedMail, parse_mail
from ticketmail.memory import LARGE_BYTES, give_back
from ticketmail.models import AttachmentView
from ticketmail.storage.accounts import is_pending
from ticketmail.storage.availability import Availability, DatabaseUnavailable, unavailable
from ticketmail.storage.blobs import Blobs, open_blobs
from ticketmail.storage.mails import read_sender
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.readers import ThreadReaders
from ticketmail.storage.records import Sender

__all__ = [
    "Admission",
    "AdmissionError",
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
    """A mail past the sender check, its raw message and attachments written to disk (not
    yet fsync'd where `BlobStore.defers_sync`: `BlobStore.sync` does that)."""

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

    def __init__(
        self,
        config: Config,
        *,
        database: DatabaseTarget,
        blobs: Blobs,
        availability: Availability | None = None,
    ) -> None:
        self.config = config
        self.policy = route_policy(config)
        self.database = database
        self.blobs = blobs
        # One read-only connection per thread, a broken one replaced (DatabaseUnavailable
        # when none can be opened: the mail is answered 451, SPEC 10).
        self._readers = ThreadReaders(database, availability)

    def admit(
        self, raw: bytes, envelope: Envelope, *, sender_vouched: bool, now: datetime
    ) -> Admission:
        """`sender_vouched`: an admin released the mail, so the sender check is skipped."""
        mail = parse_mail(raw)
        sender = mail.from_addr
        cls = classify(
            mail, envelope_from=envelope.mail_from, policy=self.policy, own_message_id=False
        )
        silent = cls.bounce or cls.own_loop  # accepted silently even from unknown senders
        if self.config.policy.sender_auth == "authres" and not (silent or sender_vouched):
            verdict = verify_sender(mail, authserv_id=self.config.smtp.authserv_id)
            if not verdict.trusted:
                return Unverified(mail, verdict.reason)
        known = self._sender(sender, now=now) if sender else None
        agent = known.agent if known is not None and not silent else None
        # Refuse unregistered senders before anything touches the disk.
        unknown = known is None or known.user is None
        if unknown and agent is None and not silent and self._readers.run(is_pending, sender):
            return Refused(mail, "pending_approval")  # SPEC 8.2: named in the refusal
        if (
            self.config.policy.unknown_sender == "reject"
            and agent is None
            and not silent
            and unknown
        ):
            return Refused(mail, "unknown_sender")
        if agent is not None and not cls.automatic:
            refused = agent_refusal(mail, self.config.tickets.subject_tag)
            if refused is not None:
                return Refused(mail, refused[0], refused[1])
        # Durable once intake's write has run `blobs.sync`, before the mail's rows commit.
        items = [raw, *(a.data for a in mail.attachments)]
        raw_blob, *blobs = self.blobs.put_all(items, defer_sync=True)
        files = tuple(
            AttachmentView(att.filename, att.content_type, blob.size, blob.sha256, att.content_id)
            for att, blob in zip(mail.attachments, blobs, strict=True)
        )
        return Admitted(mail, raw_blob.sha256, files)

    def _sender(self, address: str, *, now: datetime) -> Sender:
        return self._readers.run(read_sender, address, now=now)

    def close(self) -> None:
        """Close the reading connections, and the blob store's (the intake's, when it is
        the daemon's admitter: both end together)."""
        for conn in self._readers.take_all():
            conn.close()
        self.blobs.close()


# --- worker processes ------------------------------------------------------------------------
#
# Each worker talks to the daemon over a socket pair of its own, one request at a time:
# a frame is a 4-byte big-endian length and a pickle. The daemon's side of the socket is an
# asyncio stream, so a mail's trip to a worker and back costs no thread of the daemon's (a
# thread would wait for the event loop's GIL at every hand-over).

_FRAME = struct.Struct(">I")
READY = b"ready"
STOP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Failed:
    """An exception inside a worker's admit, told to the daemon (which raises it there);
    `unavailable`: the database was away (the mail is answered 451, not quarantined)."""

    error: str
    unavailable: bool = False


class AdmissionError(TicketmailError):
    """A worker failed on a mail (its exception, or it died twice); intake quarantines it."""


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = sock.recv(min(size, 1 << 20))
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _frame(data: bytes) -> bytes:
    """`data` as one message on a worker's socket: its length, then itself."""
    return _FRAME.pack(len(data)) + data


def _send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_frame(data))


def _recv_frame(sock: socket.socket) -> bytes | None:
    """The next message on a worker's socket; None once the other end has closed it."""
    header = _recv_exactly(sock, _FRAME.size)
    return _recv_exactly(sock, _FRAME.unpack(header)[0]) if header else None


def worker_main(fd: int) -> None:  # pragma: no cover - in the worker
    """A worker process's start (`python -c`, see AdmissionPool): its config comes first over
    the socket `fd`. Should the daemon be gone before it said anything (killed while
    starting it), the worker ends quietly."""
    # Ctrl-C reaches the whole process group, and systemd may signal the whole cgroup: the
    # daemon decides when its workers end (it closes their sockets once mails under way are
    # done), so a signal must not kill one in the middle of a mail.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    try:
        body = _recv_frame(sock)
    except ConnectionError:
        body = None
    if body is None:
        return
    config: Config = pickle.loads(body)  # noqa: S301 - the daemon's, over our own socket pair
    _serve(sock, config)


def _serve(sock: socket.socket, config: Config) -> None:  # pragma: no cover - in the worker
    """A worker process: answer admission requests until the daemon closes the socket."""
    blobs = open_blobs(config.paths.blobs, config.database)
    admitter = Admitter(config, database=config.database, blobs=blobs)
    try:
        _send_frame(sock, READY)
        while True:
            body = _recv_frame(sock)
            if body is None:
                return
            raw, envelope, sender_vouched, now = pickle.loads(body)  # noqa: S301 - the daemon's
            result: Admission | _Failed
            try:
                result = admitter.admit(raw, envelope, sender_vouched=sender_vouched, now=now)
            except Exception as exc:
                result = _Failed(f"{type(exc).__name__}: {exc}", unavailable(exc))
            _send_frame(sock, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
            if len(body) > LARGE_BYTES:  # the mail, its parts and the answer: give it back
                del body, raw, result
                give_back()
    except ConnectionError:
        return  # the daemon is gone (killed): nobody is waiting for an answer
    finally:
        admitter.close()


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL a worker unless it has ended (the event loop's child watcher reaps it)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class _WorkerLost(TicketmailError):
    """The worker a mail was on died (or was cut off) before it answered."""


@dataclass(eq=False, slots=True)
class _Worker:
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # The answers this worker owes, in the order it was asked: it takes its requests one
    # after the other from its socket, so a second one waits there, not on the event loop.
    owed: deque[asyncio.Future[bytes]] = field(default_factory=deque)
    listening: asyncio.Task[None] | None = None


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(_FRAME.size)
    return await reader.readexactly(_FRAME.unpack(header)[0])


class AdmissionPool:
    """`workers` processes running `Admitter.admit`; each mail goes to the least busy one.

    A worker is given up to DEPTH mails at once (the next waits in its socket, so it starts
    on it without a trip through the event loop). Started as a new interpreter (the daemon
    has threads, which `fork` must not copy) that runs `worker_main` on its end of a socket
    pair; multiprocessing's `spawn` is not used, as its child prints a traceback when the
    daemon is killed while starting it. A worker that dies takes its mails with it: each is
    tried once more, alone on a worker, then the error goes to the caller (who keeps the mail
    in the quarantine).
    """

    DEPTH = 2

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._all: list[_Worker] = []
        self._room = asyncio.Event()  # set when a worker may have room for a mail
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """Start every worker now (each imports the parser), not at the first mail."""
        await asyncio.gather(*(self._spawn() for _ in range(self.workers)))

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        # The worker imports ticketmail from where the daemon did.
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; import {__name__} as m; m.worker_main({fd})"
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, pass_fds=(fd,), stdin=subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = _Worker(process, reader, writer)
        try:
            writer.write(_frame(pickle.dumps(self.config, protocol=pickle.HIGHEST_PROTOCOL)))
            if await _read_frame(reader) != READY:
                raise AdmissionError("a worker process said something other than ready")
        except BaseException:
            writer.close()
            _kill(process)
            raise
        if self._closed:
            writer.close()
            return
        worker.listening = asyncio.create_task(self._listen(worker), name="admission-worker")
        self._all.append(worker)
        self._room.set()

    async def _listen(self, worker: _Worker) -> None:
        """Hand each of the worker's answers to the mail that asked; on EOF, replace it."""
        try:
            while True:
                frame = await _read_frame(worker.reader)
                future = worker.owed.popleft()
                if not future.done():  # else its caller was cancelled: the answer is dropped
                    future.set_result(frame)
                self._room.set()
        except (ConnectionError, asyncio.IncompleteReadError, IndexError) as exc:
            self._lost(worker, f"{type(exc).__name__}: {exc}")

    def _lost(self, worker: _Worker, why: str) -> None:
        """The worker is dead or its state unknown: end it, fail what it owes, replace it."""
        if worker not in self._all:
            return
        self._all.remove(worker)
        worker.writer.close()
        _kill(worker.process)
        while worker.owed:
            future = worker.owed.popleft()
            if not future.done():
                future.set_exception(_WorkerLost(why))
        if worker.listening is not None and worker.listening is not asyncio.current_task():
            worker.listening.cancel()
        if self._closed:
            return
        task = asyncio.create_task(self._spawn(), name="admission-worker-spawn")
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _worker(self, *, alone: bool) -> _Worker:
        """The least busy worker with room (`alone`: one with nothing else to do)."""
        limit = 1 if alone else self.DEPTH
        while True:
            if self._closed:
                raise AdmissionError("the worker processes are stopping")
            best = min(self._all, key=lambda w: len(w.owed), default=None)
            if best is not None and len(best.owed) < limit:
                return best
            self._room.clear()
            await self._room.wait()

    async def admit(
        self, raw: bytes, envelope: Envelope, *, sender_vouched: bool, now: datetime
    ) -> Admission:
        body = pickle.dumps((raw, envelope, sender_vouched, now), pickle.HIGHEST_PROTOCOL)
        for attempt in (1, 2):
            worker = await self._worker(alone=attempt == 2)
            answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            worker.owed.append(answer)
            # The frame in two writes: a large mail is not copied once more to join them.
            worker.writer.write(_FRAME.pack(len(body)))
            worker.writer.write(body)
            try:
                await worker.writer.drain()
                reply = await answer
            except (ConnectionError, _WorkerLost) as exc:
                self._lost(worker, str(exc))
                if attempt == 2:
                    raise AdmissionError(f"worker process died twice on this mail: {exc}") from exc
                continue
            # Our own worker, over a socket pair nobody else holds.
            result: Admission | _Failed = pickle.loads(reply)  # noqa: S301
            if isinstance(result, _Failed):
                if result.unavailable:
                    raise DatabaseUnavailable(result.error)
                raise AdmissionError(result.error)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return sorted(w.process.pid for w in self._all)

    async def close(self) -> None:
        """Close every worker's socket (it exits at the EOF); kill what has not ended soon."""
        self._closed = True
        self._room.set()
        for task in list(self._spawning):
            task.cancel()
        workers, self._all = self._all, []
        for worker in workers:
            if worker.listening is not None:
                worker.listening.cancel()
            worker.writer.close()
            while worker.owed:
                future = worker.owed.popleft()
                if not future.done():
                    future.set_exception(_WorkerLost("the worker processes are stopping"))
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_SECONDS)
            except TimeoutError:
                _kill(worker.process)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.process.wait(), STOP_SECONDS)
