"""PostgreSQL beside the intake benchmark: the throwaway cluster, its CPU, and its waits.

`PgSide` starts a cluster of its own (tests/pgcluster.py's `PgCluster`: Debian's binaries,
a Unix socket under /tmp, `fsync = on`), makes one database per configuration measured, and
reads, for one database: the CPU of the server processes that work for it (from /proc),
`pg_stat_database`, and the ERROR lines the server logged. A sampler in a process of its own
(this file run as a script) counts, between `start` and `stop` on its stdin, the backends of
each database that wait and what for (`pg_stat_activity`, every 20 ms): a `Lock` wait on
`advisory write lock` is one writer trip waiting for another's (ticketmail's write lock: a
trip that must run alone, or a trip waiting for one), on `advisory key` a job waiting for
another node's job on the same ticket or Message-ID, on `relation`, `tuple` or
`transactionid` a wait for a row or table another transaction holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procs
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pgcluster import PgCluster  # noqa: E402

__all__ = ["DbStats", "PgSide", "Sampler", "Waits"]

SAMPLE_SECONDS = 0.02
STATS_FLUSH_SECONDS = 11.0  # PostgreSQL 15 flushes an idle backend's statistics within 10 s
STAT_COLUMNS = ("xact_commit", "xact_rollback", "conflicts", "deadlocks")
ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC):\s+(.*)")
KNOWN_ERRORS = (
    ("could not serialize access", "serialisation failure"),
    ("deadlock detected", "deadlock"),
    ("canceling statement due to statement timeout", "statement timeout"),
    ("lock timeout", "lock timeout"),
)
# An advisory wait is named by the lock waited for: ticketmail's write lock (a one-bigint
# lock, `postgres.WRITE_LOCK`: a trip that runs alone, or one waiting for such a trip) or a
# job's key (two-int, `postgres.KEY_LOCKS`: two nodes' jobs on one ticket or Message-ID).
WAITS_SQL = """
SELECT a.datname, a.wait_event_type,
    CASE WHEN a.wait_event = 'advisory' THEN COALESCE((
        SELECT CASE WHEN l.objsubid = 2 THEN 'advisory key' ELSE 'advisory write lock' END
        FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.locktype = 'advisory'
        LIMIT 1), 'advisory write lock') ELSE a.wait_event END,
    count(*)
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.state = 'active'
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class Waits:
    """What one database's active backends were seen doing over a window of samples."""

    samples: int = 0
    active: int = 0  # backend-samples running a statement
    lock: dict[str, int] = field(default_factory=dict)  # Lock waits by wait_event
    max_lock_waiters: int = 0  # the most backends waiting on a Lock in one sample

    @property
    def lock_total(self) -> int:
        return sum(self.lock.values())

    def text(self) -> str:
        """`advisory write lock 3, advisory key 0, relation 0` style, every other lock named."""
        named = {
            kind: self.lock.get(kind, 0)
            for kind in ("advisory write lock", "advisory key", "relation")
        }
        named.update({k: v for k, v in sorted(self.lock.items()) if k not in named})
        return ", ".join(f"{k} {v}" for k, v in named.items())

    def as_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "active_backend_samples": self.active,
            "lock_wait_samples": dict(self.lock),
            "max_lock_waiters": self.max_lock_waiters,
        }


def _classify(message: str) -> str:
    for needle, name in KNOWN_ERRORS:
        if needle in message:
            return name
    return message[:120]


@dataclass(frozen=True, slots=True)
class DbStats:
    """pg_stat_database of one database: commits, rollbacks, conflicts, deadlocks."""

    values: dict[str, int]

    def minus(self, other: DbStats) -> DbStats:
        return DbStats({k: v - other.values.get(k, 0) for k, v in self.values.items()})

    def text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.values.items())


class Sampler:
    """The sampling process: `start()` and `stop() -> {database: Waits}` around a measurement."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--url", url, "--interval", str(SAMPLE_SECONDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=procs._die_with_parent,
        )
        self.backend_pid = int(self._line().split()[1])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30.0)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the pg_stat_activity sampler did not answer ({self.proc.poll()})")
        return line

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def start(self) -> None:
        self._send("start")

    def stop(self, database: str) -> Waits:
        """What `database`'s backends waited for since `start`."""
        self._send("stop")
        raw = json.loads(self._line())
        seen = raw["databases"].get(database, {})
        return Waits(
            samples=int(raw["samples"]),
            active=int(seen.get("active", 0)),
            lock=dict(seen.get("lock", {})),
            max_lock_waiters=int(seen.get("max_lock_waiters", 0)),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class PgSide:
    """The benchmark's own PostgreSQL cluster, its databases, a sampler, and readings."""

    def __init__(self) -> None:
        self.cluster = PgCluster().start()
        self.databases: list[str] = []
        self.admin: psycopg.Connection[Any] | None = None
        self.sampler: Sampler | None = None
        try:
            self.admin = psycopg.connect(self.cluster.url(), autocommit=True)
            self.sampler = Sampler(self.cluster.url())
        except BaseException:
            self.stop()
            raise

    @property
    def postmaster(self) -> int:
        return int((self.cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def version(self) -> str:
        assert self.admin is not None
        row = self.admin.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def create_database(self, name: str) -> str:
        """A new empty database (ticketmail migrates it when it first opens it); its URL."""
        self.cluster.psql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.cluster.url(name)

    def cpu_seconds(self, database: str) -> float:
        """CPU seconds of the cluster's processes that work for `database` or for all (the
        postmaster, WAL writer, checkpointer, ...); backends of the other databases, this
        reading's own connection and the sampler's are left out."""
        assert self.admin is not None
        assert self.sampler is not None
        others = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid = pg_backend_pid() "
            "OR (datname IS NOT NULL AND datname <> %s)",
            (database,),
        ).fetchall()
        exclude = {int(r[0]) for r in others} | {self.sampler.backend_pid}
        return procs.cpu_seconds(self.postmaster, exclude=exclude)

    def stats(self, database: str) -> DbStats:
        assert self.admin is not None
        row = self.admin.execute(
            f"SELECT {', '.join(STAT_COLUMNS)} FROM pg_stat_database WHERE datname = %s",  # noqa: S608
            (database,),
        ).fetchone()
        return DbStats({k: int(v or 0) for k, v in zip(STAT_COLUMNS, row or (), strict=False)})

    def log_offset(self) -> int:
        try:
            return self.cluster.log_file.stat().st_size
        except OSError:
            return 0

    def errors_since(self, offset: int) -> Counter[str]:
        """ERROR, FATAL and PANIC lines the server logged after `offset`, by kind."""
        found: Counter[str] = Counter()
        try:
            with self.cluster.log_file.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return found
        for line in text.splitlines():
            match = ERROR_LINE.search(line)
            if match:
                found[f"{match.group(1)} {_classify(match.group(2))}"] += 1
        return found

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
        if self.admin is not None:
            with contextlib.suppress(psycopg.Error):
                self.admin.close()
            self.admin = None
        self.cluster.stop()


# --- the sampling process -----------------------------------------------------------------------


def _command(timeout: float | None) -> str | None:
    """The next line on stdin, read unbuffered; None if none came within `timeout`, "" at EOF."""
    ready, _, _ = select.select([0], [], [], timeout)
    if not ready:
        return None
    line = b""
    while not line.endswith(b"\n"):
        char = os.read(0, 1)
        if not char:
            return ""
        line += char
    return line.decode("ascii", errors="replace").strip() or " "


def _sample(url: str, interval: float) -> None:
    """Print `pid N`; then on `start` sample until `stop`, print the window's JSON; until EOF."""
    conn = psycopg.connect(url, autocommit=True, application_name="bench-sampler")
    print(f"pid {conn.info.backend_pid}", flush=True)
    command = _command(None)
    while command:
        if command != "start":
            command = _command(None)
            continue
        samples = 0
        per_db: dict[str, dict[str, Any]] = {}
        while True:
            samples += 1
            waiting: Counter[str] = Counter()
            for datname, kind, event, count in conn.execute(WAITS_SQL).fetchall():
                db = per_db.setdefault(
                    str(datname), {"active": 0, "lock": Counter(), "max_lock_waiters": 0}
                )
                db["active"] += count
                if kind == "Lock":
                    db["lock"][str(event)] += count
                    waiting[str(datname)] += count
            for datname, n in waiting.items():
                db = per_db[datname]
                db["max_lock_waiters"] = max(db["max_lock_waiters"], n)
            command = _command(interval)
            if command is not None:  # "stop", or EOF
                break
        print(json.dumps({"samples": samples, "databases": per_db}), flush=True)
        if command == "stop":
            command = _command(None)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="sample pg_stat_activity between start and stop")
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=SAMPLE_SECONDS)
    args = parser.parse_args()
    _sample(args.url, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
