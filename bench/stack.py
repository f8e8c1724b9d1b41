"""The stack under test: the bare sink, ticketmail's front alone, the relay sink and
ticketmail as subprocesses.

Writes ticketmail's config into a fresh work dir, registers the senders through ticketmail's
own CLI (`customer import`, `user import`), starts the four servers and waits, bounded, for
their ports. Every server started is appended to the caller's list, which the caller stops.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procs
from load import Sender, TicketPool, make_senders
from postfix import PostfixServer
from report import FRONT, POSTFIX, SINK, TICKETMAIL

__all__ = ["Bench", "machine", "start_servers", "ticketmail_cli"]

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
CUSTOMERS = 5
USERS = 50
START_SECONDS = 20.0
NO_RATE_LIMIT = 1_000_000


def child_env() -> dict[str, str]:
    """The runner's environment without TICKETMAIL_* (no config or relay secret leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ticketmail_cli(config: Path, *args: str) -> str:
    """Run the real `ticketmail` command line; raise with its stderr on failure."""
    done = subprocess.run(
        [PYTHON, "-m", "ticketmail", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=config.parent,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ticketmail {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def write_config(path: Path, *, data_dir: Path, port: int, relay_port: int) -> None:
    sections: dict[str, dict[str, Any]] = {
        # All senders connect from 127.0.0.1, like an MTA in front: its 50 connections at once
        # are more than the 10 one source gets by default.
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "hostname": "ticketmail.bench.example",
            "max_sessions_per_ip": 100,
        },
        "storage": {"data_dir": str(data_dir)},
        "relay": {"transport": "smtp", "host": "127.0.0.1", "port": relay_port},
        # Every new ticket is confirmed, as with many distinct senders in production; the
        # default caps (10 per address and hour) would leave the outbox worker idle here.
        "policy": {
            "max_auto_replies_per_hour": NO_RATE_LIMIT,
            "max_auto_replies_per_ticket_per_hour": NO_RATE_LIMIT,
        },
        "log": {"level": "info", "format": "json"},
    }
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def register(config: Path, senders: Sequence[Sender]) -> None:
    """Every sender a registered user of an institution with a support contract."""
    until = (datetime.now(UTC).date() + timedelta(days=365)).isoformat()
    customers = sorted({s.customer for s in senders})
    customers_csv = config.parent / "customers.csv"
    customers_csv.write_text(
        "number,name,support_until,trial_until\n"
        + "".join(f"{c},Schule {c},{until},\n" for c in customers),
        encoding="utf-8",
    )
    users_csv = config.parent / "users.csv"
    users_csv.write_text(
        "email,customer,name,lang\n"
        + "".join(
            f"{s.address},{s.customer},{s.name},{'de' if i % 2 == 0 else 'en'}\n"
            for i, s in enumerate(senders)
        ),
        encoding="utf-8",
    )
    ticketmail_cli(config, "customer", "import", str(customers_csv))
    ticketmail_cli(config, "user", "import", str(users_csv))
    listed = json.loads(ticketmail_cli(config, "user", "list", "--json"))
    if len(listed) != len(senders):
        raise RuntimeError(f"registered {len(listed)} users, expected {len(senders)}")


@dataclass(slots=True)
class Bench:
    workdir: Path
    config: Path
    sink: procs.Server
    front: procs.Server
    ticketmail: procs.Server
    relay: procs.Server
    relay_count: Path
    senders: tuple[Sender, ...]
    pools: dict[str, TicketPool]
    run_id: str
    postfix: PostfixServer | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """The servers that get the load: the bare sink, ticketmail's front alone, ticketmail,
        and Postfix if running."""
        ours = (SINK, FRONT, TICKETMAIL)
        return (*ours, POSTFIX) if self.postfix is not None else ours

    def target(self, name: str) -> procs.Server | PostfixServer:
        if name == POSTFIX:
            assert self.postfix is not None
            return self.postfix
        return {SINK: self.sink, FRONT: self.front}.get(name, self.ticketmail)

    def relayed(self) -> int:
        """Mails the relay sink has received so far (its count file, 0.25 s behind)."""
        try:
            return int(self.relay_count.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    @property
    def all_pids(self) -> list[int]:
        pids = [self.sink.pid, self.front.pid, self.ticketmail.pid, self.relay.pid]
        return pids + ([self.postfix.pid] if self.postfix is not None else [])

    def add_postfix(self, server: PostfixServer) -> None:
        self.postfix = server
        self.pools[POSTFIX] = TicketPool()


def start_servers(workdir: Path, servers: list[procs.Server | PostfixServer]) -> Bench:
    """Relay sink, registration, ticketmail and the bare sink; each appended to `servers`."""
    env = child_env()
    sink_script = str(BENCH / "sink.py")
    relay_port, tm_port, sink_port = procs.free_port(), procs.free_port(), procs.free_port()
    relay_count = workdir / "relay.count"
    relay = procs.start(
        "relay sink",
        [PYTHON, sink_script, "--port", str(relay_port), "--count-file", str(relay_count)],
        port=relay_port,
        log_path=workdir / "relay.log",
        env=env,
        cwd=workdir,
    )
    servers.append(relay)
    config = workdir / "config.toml"
    write_config(config, data_dir=workdir / "data", port=tm_port, relay_port=relay_port)
    senders = make_senders(USERS, customers=CUSTOMERS)
    register(config, senders)
    tm = procs.start(
        "ticketmail",
        [PYTHON, "-m", "ticketmail", "--config", str(config), "serve"],
        port=tm_port,
        log_path=workdir / "ticketmail.log",
        env=env,
        cwd=workdir,
    )
    servers.append(tm)
    sink = procs.start(
        "bare sink",
        [PYTHON, sink_script, "--port", str(sink_port)],
        port=sink_port,
        log_path=workdir / "sink.log",
        env=env,
        cwd=workdir,
    )
    servers.append(sink)
    front_port = procs.free_port()
    front = procs.start(
        "ticketmail's front",
        [PYTHON, sink_script, "--port", str(front_port), "--front", "ticketmail"],
        port=front_port,
        log_path=workdir / "front.log",
        env=env,
        cwd=workdir,
    )
    servers.append(front)
    for server in (relay, tm, sink, front):
        server.wait_port(seconds=START_SECONDS)
    return Bench(
        workdir=workdir,
        config=config,
        sink=sink,
        front=front,
        ticketmail=tm,
        relay=relay,
        relay_count=relay_count,
        senders=senders,
        pools={SINK: TicketPool(), FRONT: TicketPool(), TICKETMAIL: TicketPool()},
        run_id=f"b{time.time_ns():x}",
    )


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(
                (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                model,
            )
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiosmtpd": version("aiosmtpd"),
        "aiosmtplib": version("aiosmtplib"),
        "aiosqlite": version("aiosqlite"),
    }
