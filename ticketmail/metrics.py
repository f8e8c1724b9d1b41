"""What `/metrics` reports (SPEC 9), in Prometheus' text format: a registry of each daemon's
own (never prometheus-client's global one, so several daemons in one process keep apart).

Counted as it happens: mails by the intake's outcome, web requests by route template and
status with their latency, outbox mails taken over from a node whose lease ran out (repeats).
Read from the database at each scrape (`Figures`): the outbox's queued entries and the age of
the oldest, quarantine and held entries, tickets by status. The node they are of (`node.name`,
SPEC 10): `ticketmail_node_info{node="..."} 1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ticketmail.models import STATUSES
from ticketmail.storage.desk import Figures

__all__ = ["Metrics"]

# Web latency buckets, seconds: a page is aimed at well under 100 ms.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Scraped:
    """The database's figures as of the scrape under way (set just before it is rendered)."""

    def __init__(self) -> None:
        self.figures: Figures | None = None
        self.now: datetime | None = None

    def collect(self) -> Iterator[Metric]:
        figures, now = self.figures, self.now
        if figures is None or now is None:
            return
        yield GaugeMetricFamily(
            "ticketmail_outbox_queued", "Outbox entries waiting to be sent.",
            value=figures.outbox_queued,
        )  # fmt: skip
        oldest = (now - figures.outbox_oldest).total_seconds() if figures.outbox_oldest else 0.0
        yield GaugeMetricFamily(
            "ticketmail_outbox_oldest_queued_seconds",
            "Age of the oldest outbox entry still queued (0 when none is).",
            value=max(0.0, oldest),
        )
        yield GaugeMetricFamily(
            "ticketmail_quarantine_entries",
            "Mails kept in the quarantine after an error, not yet released or dropped.",
            value=figures.quarantine,
        )
        yield GaugeMetricFamily(
            "ticketmail_held_entries",
            "Mails held for an admin (unverified sender), not yet released or dropped.",
            value=figures.held,
        )
        tickets = GaugeMetricFamily("ticketmail_tickets", "Tickets by status.", labels=["status"])
        counted = dict(figures.tickets)
        for status in (*STATUSES, *sorted(set(counted) - set(STATUSES))):
            tickets.add_metric([status], counted.get(status, 0))
        yield tickets


class Metrics:
    """One daemon's counters and its registry; `node` names the node they are of."""

    def __init__(self, *, node: str) -> None:
        self.registry = CollectorRegistry()
        self.node = node
        Gauge(
            "ticketmail_node_info", "The node these figures are of (node.name).", ["node"],
            registry=self.registry,
        ).labels(node).set(1)  # fmt: skip
        self.mails = Counter(
            "ticketmail_mails", "Mails taken in, by the intake's outcome.", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.requests = Counter(
            "ticketmail_web_requests", "Web requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "ticketmail_web_request_seconds", "Web request latency by route template.",
            ["route"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.repeats = Counter(
            "ticketmail_outbox_repeats",
            "Outbox mails claimed again after another claim's lease ran out (its node died or "
            "stalled mid-send): each may have been delivered twice.",
            registry=self.registry,
        )
        self._scraped = _Scraped()
        self.registry.register(self._scraped)

    def mail(self, outcome: str) -> None:
        """Count one mail's outcome (ticket_created, rejected, held, quarantined, ...)."""
        self.mails.labels(outcome).inc()

    def outbox_repeat(self) -> None:
        """Count one outbox mail claimed again after a lease ran out."""
        self.repeats.inc()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self, figures: Figures, *, now: datetime) -> bytes:
        """The text format, with the database's figures just read (no await in between, so
        concurrent scrapes never mix their figures)."""
        self._scraped.figures, self._scraped.now = figures, now
        return generate_latest(self.registry)
