"""Events that can come in floods, logged at most once a second per kind, with their count."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["RateLog"]

log = structlog.get_logger()

INTERVAL_SECONDS = 1.0


class RateLog:
    """`rate_log.warning(event, kind, **fields)` logs the first of a kind at once, and then at
    most one line every INTERVAL_SECONDS, whose `count` says how many there were since the
    last line (those not logged included); the fields are those of the latest."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._count: dict[tuple[str, str], int] = {}

    def warning(self, event: str, kind: str, **fields: Any) -> bool:
        """Count one; log it (True) unless a line of this kind went out within the interval."""
        key = (event, kind)
        self._count[key] = self._count.get(key, 0) + 1
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < INTERVAL_SECONDS:
            return False
        self._last[key] = now
        count, self._count[key] = self._count[key], 0
        log.warning(event, reason=kind, count=count, **fields)
        return True
