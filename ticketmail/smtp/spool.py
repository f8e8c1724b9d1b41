"""A mail being received: in memory up to a threshold, beyond it in a file; the shared budget.

`Spool` holds a mail's DATA as it arrives: in memory up to `smtp.spool_threshold_bytes`,
beyond that in an unnamed temporary file under `<data_dir>/spool` (O_TMPFILE on Linux: it
has no name, so it is gone when closed, and a crash leaves nothing behind). The file is
never fsync'd: until the mail's reply it is the sender's to keep, and an accepted mail is
made durable by intake's blob store, as before.

`MemoryBudget` counts what all sessions hold in memory together (`smtp.memory_budget_bytes`):
the in-memory part of every mail being received, and every mail while intake processes it
(read back whole then, and handed to a worker; counted at a multiple of its size). Over the
budget, new MAIL and DATA get `452 4.3.1` and mails being received go to their files; a
received mail waits for room before it is read back, unless no other is being processed.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import IO

from ticketmail.memory import give_back

__all__ = ["MemoryBudget", "MemoryTrim", "Spool"]


class MemoryBudget:
    """Bytes of mail held in memory by every session together, against a limit."""

    # What a mail being processed costs the daemon, in multiples of its size: read back
    # whole, pickled for the worker, in the transport's buffer (measured with a 24 MB mail:
    # the daemon grew by 88 MB). The worker's share (about 9 times the mail while the mail
    # package parses it) is bounded by the number of workers, one mail each at a time.
    PROCESSING_FACTOR = 4

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._processing = 0  # mails being processed (their cost is in `held`)
        self._freed = asyncio.Event()

    @property
    def exhausted(self) -> bool:
        return self.held >= self.limit

    def take(self, size: int) -> None:
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size
        self._freed.set()

    async def processing(self, size: int) -> int:
        """Hold the cost of processing a mail of `size` bytes: at once when it fits or no
        other mail is being processed (so one always goes on), else once others gave room.
        Returns the cost, for `processed`."""
        cost = size * self.PROCESSING_FACTOR
        while self._processing and self.held + cost > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.held += cost
        self._processing += 1
        return cost

    def processed(self, cost: int) -> None:
        self._processing -= 1
        self.give(cost)


class Spool:
    """One mail's DATA: in memory (counted in the budget) up to `threshold` bytes, then all
    of it in an unnamed file under `directory`."""

    def __init__(self, directory: Path, *, threshold: int, budget: MemoryBudget) -> None:
        self.directory = directory
        self.threshold = threshold
        self.budget = budget
        self.size = 0
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None

    @property
    def in_memory(self) -> int:
        return 0 if self._file is not None else self.size

    def write(self, data: bytes) -> None:
        if not data:
            return
        # Past the budget, even a small mail goes to the file.
        fits = self.size + len(data) <= self.threshold and not self.budget.exhausted
        if self._file is None and fits:
            self._chunks.append(data)
            self.size += len(data)
            self.budget.take(len(data))
            return
        if self._file is None:
            # Kept open across writes, closed by `close` (a `with` cannot span them).
            self._file = tempfile.TemporaryFile(dir=self.directory, prefix="data-")  # noqa: SIM115
            self._file.writelines(self._chunks)
            self._chunks.clear()
            self.budget.give(self.size)
        self._file.write(data)
        self.size += len(data)

    def read(self) -> bytes:
        """The whole mail (from the file, if it went there)."""
        if self._file is None:
            return b"".join(self._chunks)
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        """Drop the mail: memory given back to the budget, the file removed."""
        if self._file is None:
            self.budget.give(self.size)
        else:
            self._file.close()
            self._file = None
        self._chunks.clear()
        self.size = 0


class MemoryTrim:
    """`memory.give_back` shortly after large sessions or mails ended, at most once a `delay`
    (a full collection takes about 20 ms)."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        """Give back shortly (once for all the large frees until then)."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.delay, self._run)

    def _run(self) -> None:
        self._pending = None
        give_back()
