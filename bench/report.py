"""Benchmark figures: per-round measurements summed up into the table, and ticketmail's log read.

Pure functions of their inputs, apart from `scan_log`, which reads one file.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load import LoadResult, percentile
from pgwatch import Waits

__all__ = [
    "LogSummary",
    "Measurement",
    "Row",
    "backend_table",
    "markdown_table",
    "other_load",
    "problems",
    "progress_line",
    "rows",
    "scan_log",
]

SINK = "sink"
FRONT = "front"  # ticketmail's own SMTP front (TicketSMTP) with nothing behind DATA
TICKETMAIL = "ticketmail"
POSTFIX = "postfix"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One workload sent once to one server."""

    workload: str
    round: int
    target: str
    result: LoadResult
    peak_rss_kib: int
    server_cpu_seconds: float  # while the load ran
    server_cpu_total_seconds: float  # until the server was idle again (outbox drained)
    settle_seconds: float
    other_cpu_seconds: float  # busy CPU of everything else on the machine while the load ran
    steal_seconds: float  # CPU the hypervisor gave to other guests while the load ran
    backlog: int | None  # ticketmail: confirmations not yet at the relay when the load ended
    # ticketmail on PostgreSQL: the CPU of the database server's processes working for it,
    # until idle again; what its backends waited for; the ERRORs the server logged.
    db_cpu_total_seconds: float = 0.0
    waits: Waits | None = None
    db_errors: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "workload": self.workload,
            "round": self.round,
            "target": self.target,
            "planned": r.planned,
            "accepted": r.accepted,
            "seconds": round(r.seconds, 4),
            "mails_per_second": round(r.rate, 2),
            "p50_ms": round(r.p50 * 1000, 3),
            "p99_ms": round(r.p99 * 1000, 3),
            "max_ms": round(r.max * 1000, 3),
            "codes": {str(k): v for k, v in sorted(r.codes.items())},
            "errors": dict(r.errors),
            "misrouted": r.misrouted,
            "odd_replies": list(r.odd_replies),
            "timed_out": r.timed_out,
            "peak_rss_kib": self.peak_rss_kib,
            "server_cpu_seconds": round(self.server_cpu_seconds, 3),
            "server_cpu_total_seconds": round(self.server_cpu_total_seconds, 3),
            "client_cpu_seconds": round(r.client_cpu_seconds, 3),
            "settle_seconds": round(self.settle_seconds, 3),
            "other_cpu_seconds": round(self.other_cpu_seconds, 3),
            "steal_seconds": round(self.steal_seconds, 3),
            "outbox_backlog_at_end": self.backlog,
            "node_accepted": list(r.node_accepted),
            "node_p50_ms": [_ms(percentile(n, 50)) if n else None for n in r.node_latencies],
            "node_p99_ms": [_ms(percentile(n, 99)) if n else None for n in r.node_latencies],
            "db_cpu_total_seconds": round(self.db_cpu_total_seconds, 3),
            "waits": self.waits.as_json() if self.waits is not None else None,
            "db_errors": dict(self.db_errors),
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def progress_line(m: Measurement) -> str:
    r = m.result
    wall = r.seconds or math.nan
    codes = " ".join(f"{c}x{n}" for c, n in sorted(r.codes.items()))
    extra = f"  errors {dict(r.errors)}" if r.errors else ""
    if r.timed_out:
        extra += "  TIMED OUT"
    if m.backlog is not None:
        extra += f"  outbox backlog {m.backlog}"
    if m.waits is not None:
        extra += (
            f"  postgres CPU {m.db_cpu_total_seconds * 1000 / max(r.accepted, 1):.1f} ms/mail"
            f"  lock waits "
            f"[{m.waits.text()}] of {m.waits.samples} samples"
        )
    if m.db_errors:
        extra += f"  server ERRORs {dict(m.db_errors)}"
    return (
        f"{m.workload:<8} round {m.round + 1}  {m.target:<10} "
        f"{r.rate:8.1f} mails/s  p50 {r.p50 * 1000:7.1f} ms  p99 {r.p99 * 1000:7.1f} ms  "
        f"max {r.max * 1000:7.1f} ms  RSS {m.peak_rss_kib / 1024:6.1f} MB  "
        f"CPU server {m.server_cpu_seconds / wall:4.0%} client {r.client_cpu_seconds / wall:4.0%}"
        f" other {m.other_cpu_seconds / wall:4.0%} steal {m.steal_seconds / wall:4.0%}"
        f"  settle {m.settle_seconds:4.1f} s  [{codes}]{extra}"
    )


@dataclass(frozen=True, slots=True)
class Side:
    """One server's figures for one workload: medians over rounds, the largest peak RSS."""

    rate: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    cpu_ms_per_mail: float
    mails: int


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    rounds: int
    base: Side  # the server compared with: the bare sink, or Postfix
    subject: Side  # the server measured against it: ticketmail, or its front alone
    ratio: float
    ratio_min: float
    ratio_max: float
    p99_ratio: float


def _side(ms: Sequence[Measurement]) -> Side:
    accepted = sum(m.result.accepted for m in ms)
    return Side(
        rate=statistics.median(m.result.rate for m in ms),
        p50_ms=statistics.median(m.result.p50 * 1000 for m in ms),
        p99_ms=statistics.median(m.result.p99 * 1000 for m in ms),
        peak_rss_mb=max(m.peak_rss_kib for m in ms) / 1024,
        cpu_ms_per_mail=1000 * sum(m.server_cpu_total_seconds for m in ms) / max(accepted, 1),
        mails=accepted,
    )


def _safe_ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def rows(
    measurements: Iterable[Measurement],
    order: Sequence[str],
    *,
    base: str = SINK,
    subject: str = TICKETMAIL,
) -> list[Row]:
    """One row per workload that has `subject` and `base` measured in at least one round."""
    by_key: dict[tuple[str, int], dict[str, Measurement]] = {}
    for m in measurements:
        by_key.setdefault((m.workload, m.round), {})[m.target] = m
    out: list[Row] = []
    for name in order:
        pairs = [
            (v[base], v[subject])
            for (w, _), v in sorted(by_key.items())
            if w == name and base in v and subject in v
        ]
        if not pairs:
            continue
        ratios = [_safe_ratio(t.result.rate, s.result.rate) for s, t in pairs]
        p99s = [_safe_ratio(t.result.p99, s.result.p99) for s, t in pairs]
        out.append(
            Row(
                workload=name,
                rounds=len(pairs),
                base=_side([s for s, _ in pairs]),
                subject=_side([t for _, t in pairs]),
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                p99_ratio=statistics.median(p99s),
            )
        )
    return out


def markdown_table(table: Sequence[Row], *, base: str = SINK, subject: str = TICKETMAIL) -> str:
    head = (
        f"| workload | mails x rounds | {base} mails/s | {subject} mails/s | ratio (min-max) "
        f"| {base} p50 / p99 ms | {subject} p50 / p99 ms | p99 ratio "
        f"| {base} RSS MB | {subject} RSS MB | CPU ms/mail {base} / {subject} |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in table:
        s, t = r.base, r.subject
        lines.append(
            f"| {r.workload} | {t.mails // r.rounds} x {r.rounds} | {s.rate:.0f} | {t.rate:.0f} "
            f"| {r.ratio:.2f} ({r.ratio_min:.2f}-{r.ratio_max:.2f}) "
            f"| {s.p50_ms:.1f} / {s.p99_ms:.1f} | {t.p50_ms:.1f} / {t.p99_ms:.1f} "
            f"| {r.p99_ratio:.1f} | {s.peak_rss_mb:.0f} | {t.peak_rss_mb:.0f} "
            f"| {s.cpu_ms_per_mail:.1f} / {t.cpu_ms_per_mail:.1f} |"
        )
    return "\n".join(lines)


@dataclass(slots=True)
class LogSummary:
    """What ticketmail logged: events by level, outcomes, and lines that were not JSON."""

    lines: int = 0
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples: dict[tuple[str, str], str] = field(default_factory=dict)
    not_json: list[str] = field(default_factory=list)

    def count(self, event: str) -> int:
        return sum(n for (_, e), n in self.events.items() if e == event)

    def troubles(self) -> list[tuple[tuple[str, str], int]]:
        return [
            (key, n) for key, n in sorted(self.events.items()) if key[0] not in ("info", "debug")
        ]


def scan_log(path: Path, *, samples: int = 20) -> LogSummary:
    summary = LogSummary()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            summary.lines += 1
            try:
                entry = json.loads(line)
            except ValueError:
                if len(summary.not_json) < samples and line.strip():
                    summary.not_json.append(line.rstrip()[:300])
                continue
            if not isinstance(entry, dict):
                continue
            key = (str(entry.get("level", "?")), str(entry.get("event", "?")))
            summary.events[key] += 1
            if key not in summary.samples and key[0] not in ("info", "debug"):
                summary.samples[key] = line.rstrip()[:400]
            if key[1] == "mail_accepted":
                summary.outcomes[str(entry.get("outcome"))] += 1
    return summary


BUSY_MACHINE = 0.25  # of one core, used by processes outside the benchmark


def other_load(measurements: Sequence[Measurement]) -> str:
    """One line on how busy the rest of the machine was while the load ran."""
    shares = [m.other_cpu_seconds / m.result.seconds for m in measurements if m.result.seconds > 0]
    if not shares:
        return "No measurements."
    steal = sum(m.steal_seconds for m in measurements) / sum(m.result.seconds for m in measurements)
    line = (
        f"Other processes on the machine used {statistics.median(shares):.0%} of a core "
        f"(median over measurements, max {max(shares):.0%}); hypervisor steal {steal:.0%}."
    )
    if statistics.median(shares) > BUSY_MACHINE:
        line += " The machine was busy: absolute figures are low and noisy, ratios less so."
    return line


def problems(measurements: Iterable[Measurement]) -> list[str]:
    """Every measurement that saw a non-250 reply, an error, a misrouted follow-up or a timeout."""
    out: list[str] = []
    for m in measurements:
        r = m.result
        bad_codes = {c: n for c, n in r.codes.items() if c != 250}
        if not (bad_codes or r.errors or r.misrouted or r.timed_out or r.odd_replies):
            continue
        out.append(
            f"{m.workload} round {m.round + 1} {m.target}: accepted {r.accepted}/{r.planned}, "
            f"other replies {bad_codes}, errors {dict(r.errors)}, misrouted {r.misrouted}, "
            f"timed out {r.timed_out}"
        )
        out.extend(f"    {line}" for line in r.odd_replies)
    return out


# --- ticketmail on SQLite and on PostgreSQL -----------------------------------------------------


def _waits_sum(ms: Sequence[Measurement]) -> Waits | None:
    found = [m.waits for m in ms if m.waits is not None]
    if not found:
        return None
    lock: Counter[str] = Counter()
    for w in found:
        lock.update(w.lock)
    return Waits(
        samples=sum(w.samples for w in found),
        active=sum(w.active for w in found),
        lock=dict(lock),
        max_lock_waiters=max(w.max_lock_waiters for w in found),
    )


def _nodes_text(ms: Sequence[Measurement]) -> str:
    """Per node: mails accepted (over the rounds) and p50 / p99 ms (median over rounds)."""
    count = max(len(m.result.node_latencies) for m in ms)
    if count < 2:
        return ""
    parts = []
    for k in range(count):
        mails = sum(m.result.node_accepted[k] for m in ms)
        answered = [m.result.node_latencies[k] for m in ms if m.result.node_latencies[k]]
        if not answered:  # fewer senders than nodes: this node got no connection
            parts.append(f"node{k + 1}: {mails}")
            continue
        p50 = statistics.median(percentile(n, 50) * 1000 for n in answered)
        p99 = statistics.median(percentile(n, 99) * 1000 for n in answered)
        parts.append(f"node{k + 1}: {mails}, {p50:.1f} / {p99:.1f}")
    return "; ".join(parts)


def backend_table(
    measurements: Iterable[Measurement],
    order: Sequence[str],
    targets: Sequence[str],
    nodes: dict[str, int],
) -> str:
    """ticketmail on SQLite (the baseline) and on PostgreSQL, per workload: the ratio is each
    round's mails/s over SQLite's of the same round; CPU counts ticketmail's processes and
    the database server's (for its database) until idle again."""
    by_key: dict[tuple[str, int], dict[str, Measurement]] = {}
    for m in measurements:
        by_key.setdefault((m.workload, m.round), {})[m.target] = m
    lines = [
        "| workload | backend | nodes | mails x rounds | mails/s | ratio to SQLite (min-max) "
        "| p50 / p99 ms | per node: mails, p50 / p99 ms | CPU ms/mail ticketmail + postgres "
        "| lock-wait samples (max waiting at once) | server ERRORs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for name in order:
        rounds = [v for (w, _), v in sorted(by_key.items()) if w == name]
        for target in targets:
            ms = [v[target] for v in rounds if target in v]
            if not ms:
                continue
            ratios = [
                _safe_ratio(v[target].result.rate, v[TICKETMAIL].result.rate)
                for v in rounds
                if target in v and TICKETMAIL in v
            ]
            side = _side(ms)
            db_ms = 1000 * sum(m.db_cpu_total_seconds for m in ms) / max(side.mails, 1)
            waits = _waits_sum(ms)
            errors: Counter[str] = Counter()
            for m in ms:
                errors.update(m.db_errors)
            ratio = (
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                if ratios and target != TICKETMAIL
                else "1"
            )
            wait_text = (
                f"{waits.text()} of {waits.samples} ({waits.max_lock_waiters})"
                if waits is not None
                else ""
            )
            backend = "SQLite" if target == TICKETMAIL else "PostgreSQL"
            lines.append(
                f"| {name} | {backend} | {nodes.get(target, 1)} "
                f"| {side.mails // len(ms)} x {len(ms)} | {side.rate:.0f} | {ratio} "
                f"| {side.p50_ms:.1f} / {side.p99_ms:.1f} | {_nodes_text(ms)} "
                f"| {side.cpu_ms_per_mail:.1f} + {db_ms:.1f} = {side.cpu_ms_per_mail + db_ms:.1f} "
                f"| {wait_text} | {', '.join(f'{k} {v}' for k, v in errors.items()) or ''} |"
            )
    return "\n".join(lines)
