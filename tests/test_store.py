"""The store's own rules, on a real SQLite file: ticket numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticketmail.store import CustomerRow, Store

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Rollback(Exception):
    pass


async def _open_ticket(store: Store, first_number: int) -> int:
    async with store.transaction() as tx:
        number = await tx.next_ticket_number(first_number)
        await tx.create_ticket(
            number, customer="10042", requester="anna@schule.example", subject="Drucker",
            automatic=False, previous_number=None, now=NOW,
        )  # fmt: skip
    return number


async def _allocate_then_fail(store: Store, first_number: int, *, expected: int) -> None:
    async with store.transaction() as tx:
        assert await tx.next_ticket_number(first_number) == expected
        raise Rollback


async def test_ticket_numbers_start_at_first_number_and_are_never_reused(tmp_path: Path) -> None:
    """Numbers count up from tickets.first_number; one handed out is never handed out again."""
    store = await Store.open(tmp_path / "var")
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium", None, None)], now=NOW)
        assert await _open_ticket(store, 500) == 500
        assert await _open_ticket(store, 500) == 501
        async with store.transaction() as tx:  # handed out, its ticket never created
            assert await tx.next_ticket_number(500) == 502
        assert await _open_ticket(store, 500) == 503
        with pytest.raises(Rollback):  # rolled back: never handed out
            await _allocate_then_fail(store, 500, expected=504)
        assert await _open_ticket(store, 500) == 504
        assert await _open_ticket(store, 1000) == 1000  # a higher first_number wins
        assert await _open_ticket(store, 500) == 1001  # a lower one never goes back
    finally:
        await store.close()
