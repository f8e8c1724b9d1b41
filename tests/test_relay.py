"""The outbox: retries with backoff on 4xx, fails at once on 5xx, gives up after max_age_hours."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import Clock, Env, Sink, all_mail_out, eventually, make_mail


async def _outbox_when(
    env: Env, predicate: object, *, seconds: float = 10.0
) -> list[dict[str, object]]:
    """Poll `outbox list` (bounded) until predicate(entries) holds."""
    assert callable(predicate)
    seen: list[dict[str, object]] = []

    async def holds() -> bool:
        seen[:] = await env.cli_json("outbox", "list")
        return bool(predicate(seen))

    await eventually(
        holds, seconds=seconds, what=lambda: f"outbox never reached the expected state: {seen}"
    )
    return seen


async def test_relay_5xx_fails_the_entry_at_once(env: Env) -> None:
    """A permanent refusal by the relay marks the entry failed with the relay's reply."""
    assert env.sink is not None
    env.sink.answer = "550 5.1.1 no such user here"
    code, _ = await env.send(make_mail("anna@schule.example", "Kopierer"))
    assert code == 250
    entries = await _outbox_when(env, lambda es: es and es[0]["status"] == "failed")
    assert entries[0]["attempts"] == 1
    assert "550" in str(entries[0]["last_error"])


async def test_relay_4xx_is_retried_until_it_is_accepted(env: Env) -> None:
    """A temporary refusal is retried with backoff and delivered once the relay accepts."""
    assert env.sink is not None
    env.sink.answer = "451 4.3.0 try again later"
    code, _ = await env.send(make_mail("anna@schule.example", "Kopierer"))
    assert code == 250
    entries = await _outbox_when(env, lambda es: es and int(es[0]["attempts"]) >= 2)
    assert entries[0]["status"] == "queued"
    assert "451" in str(entries[0]["last_error"])
    assert entries[0]["next_attempt_at"] is not None
    env.sink.answer = None
    received = await env.sink.wait_for(1)
    assert received[0].rcpt_tos == ["anna@schule.example"]
    await _outbox_when(env, lambda es: es[0]["status"] == "sent")


async def test_relay_gives_up_after_max_age(env_factory: object, sink: Sink) -> None:
    """An entry still failing after relay.max_age_hours is given up and kept as failed."""
    e: Env = await env_factory(sink, relay={"max_age_hours": 1.0})  # type: ignore[operator]
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    sink.answer = "421 4.7.0 busy"
    code, _ = await e.send(make_mail("anna@schule.example", "Kopierer"))
    assert code == 250
    await _outbox_when(e, lambda es: es and int(es[0]["attempts"]) >= 1)
    e.clock.advance(hours=2)
    assert e.daemon.worker is not None
    e.daemon.worker.wake()
    entries = await _outbox_when(e, lambda es: es[0]["status"] == "failed")
    assert "421" in str(entries[0]["last_error"])
    assert sink.received == []


async def test_outbox_retry_requeues_a_failed_entry(env: Env) -> None:
    """`outbox retry ID` queues a failed mail again and it is delivered once the relay accepts."""
    assert env.sink is not None
    env.sink.answer = "554 5.7.1 rejected for now"
    code, _ = await env.send(make_mail("anna@schule.example", "Kopierer"))
    assert code == 250
    await _outbox_when(env, lambda es: es and es[0]["status"] == "failed")
    sent_too_early = await env.cli("outbox", "retry", "99")
    assert sent_too_early.returncode == 1
    assert "does not exist" in sent_too_early.stderr
    env.sink.answer = None
    retried = await env.cli("outbox", "retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert "outbox 1: queued again" in retried.stdout
    (mail,) = await env.sink.wait_for(1)
    assert mail.rcpt_tos == ["anna@schule.example"]
    await _outbox_when(env, lambda es: es[0]["status"] == "sent")
    again = await env.cli("outbox", "retry", "1")
    assert again.returncode == 1
    assert "is sent" in again.stderr
    nothing = await env.cli("outbox", "retry", "--all")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert (await env.cli("outbox", "retry")).returncode == 2


@dataclass
class TimedSink(Sink):
    """The real SMTP sink, also noting when (real and test clock) each attempt reached DATA."""

    clock: Clock | None = None
    attempts: list[float] = field(default_factory=list)
    attempts_at: list[datetime] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts.append(time.monotonic())
        if self.clock is not None:
            self.attempts_at.append(self.clock())
        return await super().handle_DATA(server, session, envelope)


async def test_relay_4xx_retries_back_off_exponentially_up_to_the_cap(
    env_factory: Any, clock: Clock
) -> None:
    """After each 4xx the wait doubles from relay.retry_initial_seconds up to retry_max_seconds."""
    initial, cap = 60.0, 600.0
    sink = TimedSink(clock=clock)
    await sink.start()
    try:
        e: Env = await env_factory(
            sink, relay={"retry_initial_seconds": initial, "retry_max_seconds": cap}
        )
        await e.customer("10042", "Gymnasium Musterstadt")
        await e.user("anna@schule.example", "10042")
        assert e.daemon.worker is not None
        sink.answer = "451 4.3.0 try again later"
        code, _ = await e.send(make_mail("anna@schule.example", "Kopierer"))
        assert code == 250
        waits: list[float] = []
        for done in range(1, 6):
            [entry] = await _outbox_when(e, lambda es, n=done: es and es[0]["attempts"] == n)
            assert len(sink.attempts_at) == done
            assert entry["status"] == "queued"
            due = datetime.fromisoformat(str(entry["next_attempt_at"]))
            waits.append((due - sink.attempts_at[-1]).total_seconds())
            # Two seconds before it is due a pass of the worker attempts nothing.
            clock.advance(seconds=(due - clock()).total_seconds() - 2)
            assert await e.daemon.worker.run_once() == 0, "attempted before next_attempt_at"
            assert len(sink.attempts_at) == done, "attempted again before next_attempt_at"
            clock.advance(seconds=3)
            e.daemon.worker.wake()
        expected = [min(initial * 2**n, cap) for n in range(5)]  # 60 120 240 480 600
        for got, want in zip(waits, expected, strict=True):
            # next_attempt_at is kept in whole seconds, so it may be up to 1 s early.
            assert want - 1.05 < got < want + 0.5, (waits, expected)
        for before, after in itertools.pairwise(waits[:4]):
            assert after >= 1.9 * before, waits  # each wait about double the one before
        assert waits[4] < 1.5 * waits[3], waits  # and then it stays at the cap
        sink.answer = None
        [mail] = await sink.wait_for(1)
        assert mail.rcpt_tos == ["anna@schule.example"]
        [entry] = await _outbox_when(e, lambda es: es[0]["status"] == "sent")
        assert entry["attempts"] == 6
    finally:
        await sink.stop()


async def test_relay_never_retries_sooner_than_a_sub_second_delay(env_factory: Any) -> None:
    """With relay.retry_initial_seconds = 0.3 no retry comes sooner than 0.3 s after the last."""
    sink = TimedSink()
    await sink.start()
    try:
        e: Env = await env_factory(
            sink, relay={"retry_initial_seconds": 0.3, "retry_max_seconds": 0.3}
        )
        await e.customer("10042", "Gymnasium Musterstadt")
        await e.user("anna@schule.example", "10042")
        sink.answer = "451 4.3.0 try again later"
        code, _ = await e.send(make_mail("anna@schule.example", "Kopierer"))
        assert code == 250
        await eventually(
            lambda: len(sink.attempts) >= 4, what=lambda: f"only {len(sink.attempts)} attempts"
        )
        intervals = [b - a for a, b in itertools.pairwise(sink.attempts[:4])]
        assert min(intervals) >= 0.28, intervals
    finally:
        await sink.stop()


async def test_outbox_retry_all_requeues_every_failed_entry(env: Env) -> None:
    """`outbox retry --all` queues both failed mails again, names them, and both are delivered."""
    assert env.sink is not None
    env.sink.answer = "554 5.7.1 rejected for now"
    for sender, subject in (("anna@schule.example", "Kopierer"), ("ben@schule.example", "Beamer")):
        code, _ = await env.send(make_mail(sender, subject))
        assert code == 250
    failed = await _outbox_when(
        env, lambda es: len(es) == 2 and all(x["status"] == "failed" for x in es)
    )
    assert sorted(str(x["recipient"]) for x in failed) == [
        "anna@schule.example",
        "ben@schule.example",
    ]
    assert env.sink.received == []
    env.sink.answer = None
    retried = await env.cli("outbox", "retry", "--all")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [
        f"outbox {x['id']}: queued again" for x in sorted(failed, key=lambda x: int(x["id"]))
    ]
    received = await env.sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["anna@schule.example", "ben@schule.example"]
    sent = await _outbox_when(env, lambda es: all(x["status"] == "sent" for x in es))
    assert len(sent) == 2
    assert all(x["sent_at"] for x in sent)
    await all_mail_out(env, 2)  # nothing is delivered a second time


@dataclass
class SessionSink(Sink):
    """The real SMTP sink, noting the connection each mail came over; may hang up after one."""

    sessions: list[int] = field(default_factory=list)
    hang_up_after_each: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.answer is None:
            self.sessions.append(id(session))
            if self.hang_up_after_each:  # close once the 250 is on its way
                asyncio.get_running_loop().call_soon(server.transport.close)
        return reply


async def _three_confirmations_waiting(env_factory: Any, sink: SessionSink, clock: Clock) -> Env:
    """Three confirmations refused once (451), then all due again at the same moment."""
    e: Env = await env_factory(
        sink, relay={"retry_initial_seconds": 60.0, "retry_max_seconds": 60.0}
    )
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    sink.answer = "451 4.3.0 try again later"
    for subject in ("Drucker", "Beamer", "Kopierer"):
        code, _ = await e.send(make_mail("anna@schule.example", subject))
        assert code == 250
    await _outbox_when(e, lambda es: len(es) == 3 and all(x["attempts"] == 1 for x in es))
    sink.answer = None
    clock.advance(seconds=61)
    assert e.daemon.worker is not None
    e.daemon.worker.wake()
    return e


async def test_confirmations_due_together_go_over_one_relay_connection(
    env_factory: Any, clock: Clock
) -> None:
    """Mails due at the same time are delivered in one SMTP session, each exactly once."""
    sink = SessionSink()
    await sink.start()
    try:
        e = await _three_confirmations_waiting(env_factory, sink, clock)
        await sink.wait_for(3)
        entries = await _outbox_when(e, lambda es: all(x["status"] == "sent" for x in es))
        assert [x["attempts"] for x in entries] == [2, 2, 2]
        assert len(sink.received) == 3
        assert len(set(sink.sessions)) == 1
    finally:
        await sink.stop()


async def test_relay_hanging_up_a_kept_connection_costs_no_retry(
    env_factory: Any, clock: Clock
) -> None:
    """When the relay closes the kept connection, the next mail goes over a new one at once."""
    sink = SessionSink(hang_up_after_each=True)
    await sink.start()
    try:
        e = await _three_confirmations_waiting(env_factory, sink, clock)
        await sink.wait_for(3)
        entries = await _outbox_when(e, lambda es: all(x["status"] == "sent" for x in es))
        assert [x["attempts"] for x in entries] == [2, 2, 2]  # none deferred again
        assert len(sink.received) == 3
        assert len(set(sink.sessions)) == 3
    finally:
        await sink.stop()
