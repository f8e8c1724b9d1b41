"""Load generator: C concurrent SMTP senders on 127.0.0.1, one kept connection each.

Every sender opens one SMTP connection (EHLO before the clock starts) and sends its share of
the mails over it one after the other, as an MTA in front of ticketmail would deliver. A
mail's latency is its SMTP transaction: from MAIL FROM to the reply to DATA. Mails alternate,
per sender, between a new ticket and a follow-up whose subject tags a ticket that the sender's
institution already has (taken from an earlier `250 2.0.0 Ok: ticket N` reply).

Run alone against any server: `python bench/load.py --port 2525 --mails 200 --senders 8`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import random
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib

__all__ = [
    "SIZES",
    "SUPPORT",
    "LoadResult",
    "MailFactory",
    "Sender",
    "TicketPool",
    "make_senders",
    "percentile",
    "run_load",
]

HOST = "127.0.0.1"
SUPPORT = "support@stueber.de"
SIZES = {"10k": 10 * 1024, "200k": 200 * 1024}
CRLF = "\r\n"
TICKET_REPLY = re.compile(r"\bticket (\d+)\b")
QUEUED = re.compile(r"2\.0\.0 Ok: queued as [0-9A-Za-z]+$")  # Postfix's answer
PLACEHOLDER_TICKET = 100001  # tag used while no real ticket is known (the bare sink has none)
MAX_RECONNECTS = 5
ODD_SAMPLES = 10

_PARAGRAPH = (
    "Guten Tag, seit dem letzten Update startet das Modul für die Stundenplanung nicht mehr. "
    "Beim Öffnen der Klassenübersicht erscheint eine Fehlermeldung, danach friert das "
    "Fenster ein. Betroffen sind alle Rechner im Lehrerzimmer; im Sekretariat läuft es. "
    "Wir haben den Rechner neu gestartet und den Zwischenspeicher geleert, ohne Erfolg. "
    "Können Sie uns bitte sagen, wie wir weiter vorgehen sollen? Vielen Dank im Voraus."
)


@dataclass(frozen=True, slots=True)
class Sender:
    """A registered user: the From: address, the name, the institution's customer number."""

    address: str
    name: str
    customer: str


def make_senders(count: int, *, customers: int) -> tuple[Sender, ...]:
    """`count` users spread round-robin over `customers` institutions."""
    return tuple(
        Sender(
            address=f"user{i:02d}@schule{i % customers}.example",
            name=f"Lehrkraft {i:02d}",
            customer=str(10001 + i % customers),
        )
        for i in range(count)
    )


class TicketPool:
    """Ticket numbers each institution has, learnt from the server's replies."""

    def __init__(self) -> None:
        self._by_customer: dict[str, deque[int]] = {}

    def add(self, customer: str, number: int) -> None:
        self._by_customer.setdefault(customer, deque(maxlen=64)).append(number)

    def pick(self, customer: str, rng: random.Random) -> int | None:
        numbers = self._by_customer.get(customer)
        return rng.choice(numbers) if numbers else None


def _wrap(text: str, width: int = 76) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


class MailFactory:
    """Mails of one size class, each unique (Message-ID, a text line, the attachment's bytes).

    The shared parts are built once, so a mail costs the load generator a string join; the
    attachment is unique per mail (its first 57 bytes), so ticketmail cannot deduplicate it.
    """

    def __init__(self, size: str, *, seed: int = 7) -> None:
        if size not in SIZES:
            raise ValueError(f"size {size!r} is not one of {', '.join(SIZES)}")
        self.size = size
        self.target = SIZES[size]
        rng = random.Random(seed)
        lines = _wrap(_PARAGRAPH)
        if size == "10k":
            self._text = self._text_lines(lines, self.target - 700)
            self._attachment = ""
        else:
            self._text = self._text_lines(lines, 1024)
            encoded_target = self.target - 1024 - 1200
            raw_size = (encoded_target // 78) * 57
            blob = rng.randbytes(raw_size)
            self._attachment = CRLF.join(
                base64.b64encode(blob[i : i + 57]).decode("ascii") for i in range(0, len(blob), 57)
            )

    @staticmethod
    def _text_lines(lines: Sequence[str], size: int) -> str:
        out: list[str] = []
        total = 0
        i = 0
        while total < size:
            line = lines[i % len(lines)]
            out.append(line)
            total += len(line.encode("utf-8")) + 2
            i += 1
            if i % len(lines) == 0:
                out.append("")
                total += 2
        return CRLF.join(out)

    def build(self, sender: Sender, *, mail_id: str, followup: int | None) -> bytes:
        """One mail; a follow-up tags `[Ticket#followup]` in its subject."""
        if followup is None:
            subject = f"Bench {self.size}: Stundenplan startet nicht ({mail_id})"
        else:
            subject = f"Re: [Ticket#{followup}] Bench {self.size}: Stundenplan startet nicht"
        headers = [
            f"From: {sender.name} <{sender.address}>",
            f"To: Support <{SUPPORT}>",
            f"Subject: {subject}",
            "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            f"Message-ID: <{mail_id}@client.bench.example>",
            "MIME-Version: 1.0",
        ]
        text = f"Referenz {mail_id}{CRLF}{CRLF}{self._text}{CRLF}{CRLF}-- {CRLF}{sender.name}"
        if not self._attachment:
            headers += [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
            ]
            return (CRLF.join(headers) + CRLF + CRLF + text + CRLF).encode("utf-8")
        boundary = f"=_bench_{mail_id}"
        unique = base64.b64encode(mail_id.encode("ascii").ljust(57, b"-")[:57]).decode("ascii")
        parts = [
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
            "",
            "This is a multi-part message in MIME format.",
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            text,
            f"--{boundary}",
            'Content-Type: image/png; name="bildschirmfoto.png"',
            'Content-Disposition: attachment; filename="bildschirmfoto.png"',
            "Content-Transfer-Encoding: base64",
            "",
            unique,
            self._attachment,
            f"--{boundary}--",
            "",
        ]
        return CRLF.join([*headers, *parts]).encode("utf-8")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run saw. `latencies` are seconds, one per mail that got a final reply."""

    planned: int
    seconds: float
    latencies: tuple[float, ...]
    codes: Counter[int]
    errors: Counter[str]
    odd_replies: tuple[str, ...]
    misrouted: int
    opened: int  # mails answered `250 ... ticket N` that were meant to open a ticket
    client_cpu_seconds: float
    timed_out: bool
    # Per node (the ports in the order given): latencies of the mails it answered, and how
    # many it accepted. One entry when the load went to one port.
    node_latencies: tuple[tuple[float, ...], ...] = ()
    node_accepted: tuple[int, ...] = ()

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def accepted(self) -> int:
        return self.codes.get(250, 0)

    @property
    def rate(self) -> float:
        """Accepted mails per second of wall time."""
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def max(self) -> float:
        return max(self.latencies) if self.latencies else math.nan


@dataclass(slots=True)
class _Tally:
    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    odd: list[str] = field(default_factory=list)
    misrouted: int = 0
    opened: int = 0
    node_latencies: list[list[float]] = field(default_factory=list)
    node_accepted: list[int] = field(default_factory=list)

    def note_odd(self, text: str) -> None:
        if len(self.odd) < ODD_SAMPLES:
            self.odd.append(text)


async def _connect(port: int, *, command_seconds: float) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=port,
        timeout=command_seconds,
        start_tls=False,
        local_hostname="loadgen.bench.example",
    )
    await client.connect()
    await client.ehlo()
    return client


async def _close(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), timeout=2.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


@dataclass(slots=True)
class _Run:
    ports: tuple[int, ...]
    factory: MailFactory
    senders: tuple[Sender, ...]
    pool: TicketPool
    tag: str
    deadline: float
    timeout: float
    clients: list[aiosmtplib.SMTP]
    tally: _Tally = field(default_factory=_Tally)
    stopping: bool = False

    async def sender(self, index: int, share: int) -> None:
        """Send `share` mails over one connection; reconnect (bounded) if it breaks.

        The connection in use stays in `clients[index]`: the caller closes it after timing.
        """
        who = self.senders[index]
        node = index % len(self.ports)
        rng = random.Random(f"{self.tag}-{index}")
        reconnects = 0
        for n in range(share):
            if self.stopping or time.monotonic() > self.deadline:
                return
            followup: int | None = None
            real_followup = False
            if n % 2 == 1:
                picked = self.pool.pick(who.customer, rng)
                real_followup = picked is not None
                followup = picked if picked is not None else PLACEHOLDER_TICKET
            mail_id = f"{self.tag}-{index}-{n}"
            raw = self.factory.build(who, mail_id=mail_id, followup=followup)
            try:
                code, text, seconds = await self._transaction(self.clients[index], who, raw)
            except (aiosmtplib.SMTPException, OSError) as exc:
                failed = getattr(exc, "code", "")
                self.tally.errors[f"{type(exc).__name__} {failed}".strip()] += 1
                self.clients[index].close()
                if self.stopping:
                    return
                if reconnects >= MAX_RECONNECTS:
                    self.tally.errors["sender_gave_up"] += 1
                    return
                reconnects += 1
                self.clients[index] = await _connect(self.ports[node], command_seconds=self.timeout)
                continue
            self._record(who, node, code, text, seconds, followup if real_followup else None)

    async def _transaction(
        self, client: aiosmtplib.SMTP, who: Sender, raw: bytes
    ) -> tuple[int, str, float]:
        start = time.perf_counter()
        try:
            await client.mail(who.address)
            await client.rcpt(SUPPORT)
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            seconds = time.perf_counter() - start
            if exc.code < 400 or exc.code == 421:
                raise
            await client.rset()
            return exc.code, exc.message, seconds
        return response.code, response.message, time.perf_counter() - start

    def _record(
        self, who: Sender, node: int, code: int, text: str, seconds: float, followup: int | None
    ) -> None:
        tally = self.tally
        tally.latencies.append(seconds)
        tally.node_latencies[node].append(seconds)
        tally.codes[code] += 1
        if code == 250:
            tally.node_accepted[node] += 1
        if code != 250:
            tally.note_odd(f"{code} {text}")
            return
        match = TICKET_REPLY.search(text)
        if match is None:
            plain = text.strip()
            if plain not in ("2.0.0 Ok", "2.0.0 Ok: discarded") and not QUEUED.match(plain):
                tally.note_odd(f"{code} {text}")
            return
        number = int(match.group(1))
        if followup is None:
            tally.opened += 1
            self.pool.add(who.customer, number)
        elif number != followup:
            tally.misrouted += 1
            tally.note_odd(f"follow-up to {followup} answered {code} {text}")


async def run_load(
    port: int | Sequence[int],
    /,
    *,
    size: str,
    mails: int,
    senders: Sequence[Sender],
    pool: TicketPool,
    tag: str,
    max_seconds: float = 120.0,
    command_timeout: float = 60.0,
) -> LoadResult:
    """Send `mails` mails of `size` through one connection per sender; bounded by max_seconds.

    Mail k goes to sender k mod C. `tag` makes every Message-ID unique (use a new one per run).
    Several ports: several nodes behind one MTA with as many next hops; sender i connects to
    port i mod N (connections alternate between the nodes).
    """
    ports = (port,) if isinstance(port, int) else tuple(port)
    count = len(senders)
    factory = MailFactory(size)
    cpu0 = time.process_time()
    deadline = time.monotonic() + max_seconds
    connected = await asyncio.wait_for(
        asyncio.gather(
            *(
                _connect(ports[i % len(ports)], command_seconds=command_timeout)
                for i in range(count)
            ),
            return_exceptions=True,
        ),
        timeout=min(max_seconds, 30.0),
    )
    clients = [c for c in connected if isinstance(c, aiosmtplib.SMTP)]
    run = _Run(ports, factory, tuple(senders), pool, tag, deadline, command_timeout, clients)
    run.tally.node_latencies = [[] for _ in ports]
    run.tally.node_accepted = [0 for _ in ports]
    seconds = 0.0
    tasks: list[asyncio.Task[None]] = []
    pending: set[asyncio.Task[None]] = set()
    try:
        for failure in connected:
            if isinstance(failure, BaseException):
                raise RuntimeError(f"cannot connect to 127.0.0.1:{ports}: {failure!r}")
        shares = [mails // count + (1 if i < mails % count else 0) for i in range(count)]
        start = time.perf_counter()
        tasks = [
            asyncio.create_task(run.sender(i, shares[i]), name=f"sender-{i}") for i in range(count)
        ]
        done, pending = await asyncio.wait(tasks, timeout=max_seconds + command_timeout)
        seconds = time.perf_counter() - start
        for task in done:
            crash = None if task.cancelled() else task.exception()
            if crash is not None:
                run.tally.errors[f"sender_crashed_{type(crash).__name__}"] += 1
    finally:
        # Also on cancellation (Ctrl-C): Python 3.11's wait_for, which aiosmtplib uses for
        # every command, can lose a cancellation, so the senders also stop on a flag.
        run.stopping = True
        unfinished = [t for t in tasks if not t.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=5.0)
        await asyncio.gather(*(_close(c) for c in run.clients), return_exceptions=True)
    tally = run.tally
    return LoadResult(
        planned=mails,
        seconds=seconds,
        latencies=tuple(tally.latencies),
        codes=tally.codes,
        errors=tally.errors,
        odd_replies=tuple(tally.odd),
        misrouted=tally.misrouted,
        opened=tally.opened,
        client_cpu_seconds=time.process_time() - cpu0,
        timed_out=bool(pending) or time.monotonic() > deadline,
        node_latencies=tuple(tuple(n) for n in tally.node_latencies),
        node_accepted=tuple(tally.node_accepted),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="SMTP port on 127.0.0.1")
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--senders", type=int, default=8, help="concurrent connections")
    parser.add_argument("--size", choices=tuple(SIZES), default="10k")
    parser.add_argument("--customers", type=int, default=5, help="institutions of the senders")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.mails < 1 or args.senders < 1 or args.customers < 1:
        parser.error("--mails, --senders and --customers must be at least 1")
    senders = make_senders(args.senders, customers=args.customers)
    tag = f"load-{os.getpid()}-{time.time_ns()}"
    result = asyncio.run(
        run_load(
            args.port,
            size=args.size,
            mails=args.mails,
            senders=senders,
            pool=TicketPool(),
            tag=tag,
            max_seconds=args.max_seconds,
        )
    )
    print(
        f"{result.accepted}/{result.planned} accepted in {result.seconds:.2f} s: "
        f"{result.rate:.1f} mails/s, p50 {result.p50 * 1000:.1f} ms, "
        f"p99 {result.p99 * 1000:.1f} ms, codes {dict(result.codes)}, "
        f"errors {dict(result.errors)}"
    )
    for line in result.odd_replies:
        print(f"  odd reply: {line}")
    return 0 if result.accepted == result.planned else 1


if __name__ == "__main__":
    sys.exit(main())
