"""`/metrics` and `/healthz` over real HTTP against the real daemon (SPEC 9): mails by
outcome sent over real SMTP, the outbox, quarantine and held entries, tickets by status, web
requests by route template with latency; a request through a proxy does not get them."""

from __future__ import annotations

import pytest
from conftest import Env, Sink, make_mail
from prometheus_client.parser import text_string_to_metric_families
from web_support import ANNA, Client, logged_in

pytestmark = pytest.mark.web  # the daemon serves the portal, /metrics with it

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(env: Env) -> Samples:
    response = await Client(env).get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_mails_by_outcome_between_two_scrapes(env: Env) -> None:
    """Between two scrapes, one accepted and one rejected mail (real SMTP) add one each."""
    before = await scrape(env)
    accepted = make_mail(ANNA, "Drucker druckt nicht")
    assert (await env.send(accepted))[1] == "2.0.0 Ok: ticket 100001"
    rejected = make_mail("stranger@unknown.example", "Angebot")
    assert (await env.send(rejected))[0] == 550
    after = await scrape(env)
    for outcome in ("ticket_created", "rejected"):
        was = value(before, "ticketmail_mails_total", outcome=outcome)
        assert value(after, "ticketmail_mails_total", outcome=outcome) == was + 1, outcome
    assert value(after, "ticketmail_tickets", status="new") == 1
    assert value(after, "ticketmail_tickets", status="closed") == 0


async def test_metrics_show_outbox_quarantine_held_and_web_requests(
    env_factory, sink: Sink
) -> None:  # type: ignore[no-untyped-def]
    """The outbox's queued entries and the oldest one's age, quarantine and held entries,
    web requests by route template and status with a latency histogram; /healthz is 200."""
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    sink.answer = "451 4.3.0 try later"  # the confirmation stays queued
    assert (await env.send(make_mail(ANNA, "Drucker")))[0] == 250
    store = env.daemon.store
    assert store is not None
    now = env.clock()
    await store.add_held(envelope_from="x@y.example", envelope_to=["support@stueber.de"],
                         sender="x@y.example", raw_sha256="0" * 64, size=1, reason="test",
                         now=now)  # fmt: skip
    for _ in range(2):
        await store.add_quarantine(envelope_from="x@y.example", envelope_to=["s@stueber.de"],
                                   raw_sha256="0" * 64, size=1, error="test", now=now)  # fmt: skip
    env.clock.advance(minutes=20)
    health = await Client(env).get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    anna = await logged_in(env, ANNA)
    assert (await anna.get("/tickets/100001")).status_code == 200
    assert (await anna.get("/desk/tickets/100001")).status_code == 404
    assert (await anna.get("/no/such/page/4711")).status_code == 404
    found = await scrape(env)
    assert value(found, "ticketmail_outbox_queued") == 1
    assert value(found, "ticketmail_outbox_oldest_queued_seconds") >= 20 * 60
    assert value(found, "ticketmail_quarantine_entries") == 2
    assert value(found, "ticketmail_held_entries") == 1
    requests = "ticketmail_web_requests_total"
    assert value(found, requests, route="/healthz", method="GET", status="200") == 1
    assert value(found, requests, route="/tickets/{number:int}", method="GET", status="200") == 1
    desk = "/desk/tickets/{number:int}"
    assert value(found, requests, route=desk, method="GET", status="404") == 1
    assert value(found, requests, route="(unmatched)", method="GET", status="404") == 1
    routes = {dict(labels).get("route", "") for name, labels in found if name == requests}
    assert not any(r.endswith(("100001", "4711")) for r in routes), routes  # templates only
    histogram = "ticketmail_web_request_seconds_count"
    assert value(found, histogram, route="/tickets/{number:int}") == 1
    assert value(found, "ticketmail_web_request_seconds_bucket", route="/healthz", le="+Inf") == 1


async def test_metrics_are_not_served_through_a_proxy(env: Env) -> None:
    """A request that came through a reverse proxy (X-Forwarded-For, Forwarded) gets 404."""
    client = Client(env)
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = await client.get("/metrics", headers={header: "203.0.113.9"})
        assert response.status_code == 404, header
        assert "ticketmail_" not in response.text
    assert (await client.get("/metrics")).status_code == 200
