"""Events that can come in floods, logged at most once a second per kind, with their count."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

__all__ = ["RateLog"]

log = structlog.get_logger()

INTERVAL_SECONDS = 1.0


class RateLog:
    """`rate_log.warning(event, kind, **fields)` on the event loop logs the first of a kind
    at once, and then at most one line every INTERVAL_SECONDS: the one that ends an interval
    with events in it, its `count` saying how many there were (the fields are the latest's)."""

    def __init__(self) -> None:
        self._count: dict[tuple[str, str], int] = {}
        self._fields: dict[tuple[str, str], dict[str, Any]] = {}
        self._quiet: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def warning(self, event: str, kind: str, **fields: Any) -> bool:
        """Count one; log it at once (True) unless a line of this kind went out within the
        interval (then the interval's end logs the count)."""
        key = (event, kind)
        self._count[key] = self._count.get(key, 0) + 1
        self._fields[key] = fields
        if key in self._quiet:
            return False
        self._emit(key)
        return True

    def _emit(self, key: tuple[str, str]) -> None:
        count = self._count.pop(key, 0)
        fields = self._fields.pop(key, {})
        if not count:
            self._quiet.pop(key, None)
            return
        log.warning(key[0], reason=key[1], count=count, **fields)
        loop = asyncio.get_running_loop()
        self._quiet[key] = loop.call_later(INTERVAL_SECONDS, self._emit, key)
