"""Mail processed again: a held mail an admin releases, quarantined mail retried after a fix.

Both read the raw mail back from the blob store and run it through the same `Intake.handle`
as a mail arriving by SMTP, then record the entry's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from ticketmail.errors import RefusedError
from ticketmail.intake.admission import Envelope
from ticketmail.intake.process import Intake
from ticketmail.models import QuarantineEntry

__all__ = ["Replayed", "release_held", "retry_quarantined"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Replayed:
    """What became of one entry: the outcome and ticket, or the error it still fails with."""

    entry: int
    outcome: str | None
    ticket: int | None = None
    error: str | None = None


async def release_held(intake: Intake, entry_id: int) -> Replayed:
    """Process a held mail as if its sender had been verified (the admin vouches)."""
    store = intake.store
    entry = await store.get_held(entry_id)
    if entry.status != "held":
        raise RefusedError(f"held entry {entry.id} was already {entry.status}")
    raw = await asyncio.to_thread(intake.blobs.get, entry.raw_sha256)
    envelope = Envelope(entry.envelope_from, entry.envelope_to)
    result = await intake.handle(raw, envelope, sender_vouched=True)
    await store.resolve_held(
        entry.id, status="released", outcome=result.outcome, now=intake.clock()
    )
    log.info("held_released", entry=entry.id, outcome=result.outcome, ticket=result.ticket)
    return Replayed(entry.id, result.outcome, result.ticket)


async def drop_held(intake: Intake, entry_id: int) -> None:
    """Drop a held mail: it opens nothing; its raw mail stays on disk."""
    store = intake.store
    entry = await store.get_held(entry_id)
    if entry.status != "held":
        raise RefusedError(f"held entry {entry.id} was already {entry.status}")
    await store.resolve_held(entry.id, status="dropped", outcome="dropped", now=intake.clock())
    log.info("held_dropped", entry=entry.id)


async def quarantined(intake: Intake, wanted: int | None) -> Sequence[QuarantineEntry]:
    """The entries to retry: `wanted`, or every one still held."""
    store = intake.store
    if wanted is None:
        return [e for e in await store.list_quarantine() if e.status == "held"]
    entry = await store.get_quarantine(wanted)
    if entry.status != "held":
        raise RefusedError(f"quarantine entry {entry.id} was already retried")
    return [entry]


async def retry_quarantined(intake: Intake, entry: QuarantineEntry) -> Replayed:
    """Process one quarantined mail again; an error is noted on the entry, which stays."""
    store = intake.store
    raw = await asyncio.to_thread(intake.blobs.get, entry.raw_sha256)
    envelope = Envelope(entry.envelope_from, entry.envelope_to)
    try:
        result = await intake.handle(raw, envelope)
    except Exception as exc:  # the mail stays in the quarantine with the new error
        error = f"{type(exc).__name__}: {exc}"
        await store.note_quarantine_error(entry.id, error)
        log.warning("quarantine_retry_failed", entry=entry.id, error=error)
        return Replayed(entry.id, None, error=error)
    await store.resolve_quarantine(entry.id, outcome=result.outcome, now=intake.clock())
    log.info("quarantine_retried", entry=entry.id, outcome=result.outcome, ticket=result.ticket)
    return Replayed(entry.id, result.outcome, result.ticket)
