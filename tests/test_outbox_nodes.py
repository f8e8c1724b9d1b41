"""The outbox claimed, never shared (SPEC 10): two nodes on one database, each with its own
outbox worker, relaying to one real SMTP sink; a node that dies mid-send leaves its mail to
the other once the lease runs out, and that repeat is counted and logged; a mail queued on
one node wakes the other's worker (NOTIFY, PostgreSQL); /metrics and the log name the node.

Two daemons started by `env_factory` share the test's data directory: on SQLite one file,
on PostgreSQL one database (the second config's .env carries the first one's URL).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import Clock, Env, Sink, eventually, make_mail, on_postgres, read_rows, smtp_send
from prometheus_client.parser import text_string_to_metric_families
from service_support import SENDER, Services
from structlog.testing import capture_logs
from web_support import Client

from ticketmail.outbound.relay import LEASE_MARGIN_SECONDS, SEND_TIMEOUTS

ANNA = "anna@schule.example"
# Every confirmation is sent: no sender runs into the auto-reply limits.
POLICY = {"max_auto_replies_per_hour": 100_000, "max_auto_replies_per_ticket_per_hour": 100_000}


async def _node(env_factory: Any, sink: Sink, name: str, **sections: dict[str, Any]) -> Env:
    relay = {"retry_initial_seconds": 60.0, "retry_max_seconds": 60.0, **sections.pop("relay", {})}
    env: Env = await env_factory(sink, node={"name": name}, policy=POLICY, relay=relay, **sections)
    return env


async def _two_nodes(env_factory: Any, sink: Sink, **sections: dict[str, Any]) -> tuple[Env, Env]:
    a = await _node(env_factory, sink, "node-a", **sections)
    b = await _node(env_factory, sink, "node-b", **sections)
    await a.customer("10042", "Gymnasium Musterstadt")
    await a.user(ANNA, "10042", name="Anna Müller", lang="de")
    return a, b


def _message_id(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])


def _outbox(env: Env) -> list[Any]:
    return read_rows(
        env.data_dir, "SELECT id, status, attempts, claimed_by, lease_until FROM outbox ORDER BY id"
    )


async def _scrape(env: Env) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await Client(env).get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


@dataclass
class SlowSink(Sink):
    """The real sink, taking `delay` seconds over each mail (so two workers' sends overlap)."""

    delay: float = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


async def test_two_nodes_deliver_every_queued_mail_exactly_once(
    env_factory: Any, clock: Clock
) -> None:
    """Two nodes' workers woken at once on 12 due mails: each reaches the sink exactly once,
    and both nodes took part (each sends only what it claimed)."""
    sink = SlowSink()
    await sink.start()
    try:
        a, b = await _two_nodes(env_factory, sink)
        sink.answer = "451 4.3.0 try again later"  # every confirmation waits, due at once later
        count = 12
        for n in range(count):
            node = (a, b)[n % 2]
            code, _ = await node.send(make_mail(ANNA, f"Anfrage {n}"))
            assert code == 250
        await eventually(
            lambda: [r["attempts"] for r in _outbox(a)] == [1] * count,
            what=lambda: f"outbox: {[tuple(r) for r in _outbox(a)]}",
        )
        sink.answer, sink.delay = None, 0.05
        clock.advance(seconds=61)
        assert a.daemon.worker is not None
        assert b.daemon.worker is not None
        a.daemon.worker.wake()
        b.daemon.worker.wake()
        await sink.wait_for(count, seconds=30)
        await eventually(
            lambda: all(r["status"] == "sent" for r in _outbox(a)), what="every entry sent"
        )
        assert await a.daemon.worker.run_once() == 0
        assert await b.daemon.worker.run_once() == 0
    finally:
        await sink.stop()
    delivered = Counter(_message_id(r.raw) for r in sink.received)
    assert len(delivered) == count, delivered
    assert set(delivered.values()) == {1}, delivered
    senders = Counter(r["claimed_by"] for r in _outbox(a))
    assert set(senders) == {"node-a", "node-b"}, senders
    assert all(r["lease_until"] is None and r["attempts"] == 2 for r in _outbox(a))


@dataclass
class HangingSink(Sink):
    """The real sink; the first mail is kept and then never answered (its sender hangs in
    DATA until the test lets go), every later one is answered at once."""

    hung: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.hung.is_set():
            self.hung.set()
            await self.release.wait()
        return reply


@pytest.mark.web
async def test_a_lease_run_out_is_sent_again_by_the_other_node_and_counted(
    env_factory: Any, clock: Clock
) -> None:
    """A node dies mid-send: its claim holds the mail from the other node until the lease
    ends; then the other node sends it again, counts the repeat in /metrics and logs
    outbox_lease_expired naming the mail and the node that had it."""
    sink = HangingSink()
    await sink.start()
    try:
        a, b = await _two_nodes(env_factory, sink)
        code, _ = await a.send(make_mail(ANNA, "Drucker"))
        assert code == 250
        await asyncio.wait_for(sink.hung.wait(), timeout=10)
        [entry] = _outbox(a)
        dead, alive = (a, b) if entry["claimed_by"] == "node-a" else (b, a)
        assert entry["status"] == "queued"
        await dead.daemon.abort()  # killed mid-send: no mark, its claim stays
        assert alive.daemon.worker is not None
        # Due, but claimed: while the lease holds the other node attempts nothing.
        clock.advance(seconds=SEND_TIMEOUTS * 30.0)
        assert await alive.daemon.worker.run_once() == 0
        assert len(sink.received) == 1
        with capture_logs() as events:
            clock.advance(seconds=LEASE_MARGIN_SECONDS + 1)
            alive.daemon.worker.wake()
            await sink.wait_for(2)
            await eventually(lambda: _outbox(alive)[0]["status"] == "sent", what="marked sent")
        figures = await _scrape(alive)
    finally:
        sink.release.set()
        await sink.stop()
    first, again = sink.received
    assert _message_id(first.raw) == _message_id(again.raw)
    [row] = _outbox(alive)
    assert row["claimed_by"] == alive.config.node_name
    assert row["attempts"] == 1  # the dead node's attempt was never concluded
    expired = [e for e in events if e["event"] == "outbox_lease_expired"]
    assert expired == [
        {
            "event": "outbox_lease_expired",
            "log_level": "warning",
            "outbox": entry["id"],
            "claimed_by": dead.config.node_name,
            "recipient": ANNA,
            "attempts": 0,
        }
    ]
    assert figures[("ticketmail_outbox_repeats_total", ())] == 1
    assert figures[("ticketmail_node_info", (("node", alive.config.node_name),))] == 1


@pytest.mark.web
async def test_a_node_restarted_after_dying_mid_send_sends_its_claims_at_once(
    env_factory: Any,
) -> None:
    """A node killed mid-send and started again (same node.name) ends its old leases at
    start: the mail goes out again without waiting for the lease, counted as a repeat."""
    sink = HangingSink()
    await sink.start()
    try:
        a = await _node(env_factory, sink, "node-a")
        await a.customer("10042", "Gymnasium Musterstadt")
        await a.user(ANNA, "10042")
        assert (await a.send(make_mail(ANNA, "Drucker")))[0] == 250
        await asyncio.wait_for(sink.hung.wait(), timeout=10)
        await a.daemon.abort()
        [entry] = _outbox(a)
        assert (entry["status"], entry["claimed_by"]) == ("queued", "node-a")
        again = await _node(env_factory, sink, "node-a")
        await sink.wait_for(2)
        await eventually(lambda: _outbox(again)[0]["status"] == "sent", what="marked sent")
        figures = await _scrape(again)
    finally:
        sink.release.set()
        await sink.stop()
    assert figures[("ticketmail_outbox_repeats_total", ())] == 1


async def test_a_mail_queued_on_one_node_wakes_the_other_nodes_worker(
    env_factory: Any, sink: Sink
) -> None:
    """Workers that poll only every 60 s: a mail queued on node A is sent within seconds —
    on PostgreSQL by node B while A's worker is stopped (NOTIFY at the commit wakes B); on
    SQLite (one node, no NOTIFY) by A's own worker, woken in-process. B's listening
    connection, cut, is opened again."""
    slow = {"poll_seconds": 60.0}
    if not on_postgres():
        a = await _node(env_factory, sink, "node-a", relay=slow)
        await a.customer("10042", "Gymnasium Musterstadt")
        await a.user(ANNA, "10042")
        assert (await a.send(make_mail(ANNA, "Beamer")))[0] == 250
        await sink.wait_for(1)
        assert [r["claimed_by"] for r in _outbox(a)] == ["node-a"]
        return
    a, _ = await _two_nodes(env_factory, sink, relay=slow)
    assert a.daemon.worker is not None
    a.daemon.worker.stop()
    await eventually(lambda: not a.daemon.healthy, what="node A's worker stopped")
    assert (await a.send(make_mail(ANNA, "Beamer")))[0] == 250
    await sink.wait_for(1)
    await eventually(lambda: _outbox(a)[0]["status"] == "sent", what="marked sent")
    assert [r["claimed_by"] for r in _outbox(a)] == ["node-b"]
    # B's listening connection cut (as a database restart would): it listens again.
    with capture_logs() as events:
        cut = read_rows(
            a.data_dir,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'ticketmail-listener' AND datname = current_database()",
        )
        assert [tuple(r) for r in cut] == [(True,)]
        await eventually(
            lambda: any(e["event"] == "outbox_listen_resumed" for e in events),
            what=lambda: f"no outbox_listen_resumed in {[e['event'] for e in events]}",
        )
    assert (await a.send(make_mail(ANNA, "Kopierer")))[0] == 250
    await sink.wait_for(2)
    await eventually(lambda: _outbox(a)[1]["status"] == "sent", what="marked sent")
    assert [r["claimed_by"] for r in _outbox(a)] == ["node-b", "node-b"]


async def test_metrics_name_the_node(env_factory: Any, sink: Sink) -> None:
    """/metrics carries ticketmail_node_info with node.name, and no other node's."""
    e = await env_factory(sink, node={"name": "mx2.schule.example"}, web={"enabled": True})
    figures = await _scrape(e)
    named = {labels for name, labels in figures if name == "ticketmail_node_info"}
    assert named == {(("node", "mx2.schule.example"),)}
    assert figures[("ticketmail_outbox_repeats_total", ())] == 0


def test_every_log_line_names_the_node(tmp_path: Path) -> None:
    """`ticketmail serve` with node.name: every line it logs (its own events and the stdlib
    loggers') carries "node"."""
    services = Services(tmp_path, watchdog_usec=0)
    try:
        service = services.start(node={"name": "node-log"})
        service.notify.wait_for("READY=1", seconds=60)
        code, _ = asyncio.run(smtp_send(service.port, make_mail(SENDER, "Drucker")))
        assert code == 250
        service.signal(signal.SIGTERM)
        assert service.wait() == 0, service.log_text()
    finally:
        services.close()
    lines = [json.loads(line) for line in service.log_text().splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    assert {"daemon_started", "mail_accepted", "daemon_stopped"} <= events, events
    assert [line for line in lines if line.get("node") != "node-log"] == []
