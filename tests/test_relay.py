"""The outbox: retries with backoff on 4xx, fails at once on 5xx, gives up after max_age_hours."""

from __future__ import annotations

import asyncio

from conftest import Env, Sink, make_mail


async def _outbox_when(
    env: Env, predicate: object, *, seconds: float = 10.0
) -> list[dict[str, object]]:
    """Poll `outbox list` (bounded) until predicate(entries) holds."""
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        entries: list[dict[str, object]] = await env.cli_json("outbox", "list")
        if predicate(entries):
            return entries
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"outbox never reached the expected state: {entries}")
        await asyncio.sleep(0.2)


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
