"""The stack under test: the bare sink, ticketmail's front alone, the relay sink and
ticketmail (on SQLite, and with `--backend postgres` on PostgreSQL with one or two nodes) as
subprocesses.

Writes each ticketmail's config into a fresh work dir (on PostgreSQL with a .env holding the
database's URL), registers the senders through ticketmail's own CLI (`customer import`,
`user import`), starts the servers and waits, bounded, for their ports. Every server started
is appended to the caller's list, which the caller stops.
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
from pgwatch import PgSide
from postfix import PostfixServer
from report import FRONT, POSTFIX, SINK, TICKETMAIL

__all__ = ["Bench", "Group", "machine", "pg_target", "start_servers", "ticketmail_cli"]

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
CUSTOMERS = 5
USERS = 50
START_SECONDS = 60.0  # bounded; several nodes starting on a busy machine take a while
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


def write_config(
    path: Path,
    *,
    data_dir: Path,
    port: int,
    relay_port: int,
    backend: str = "sqlite",
    node: str = "",
) -> None:
    storage: dict[str, Any] = {"data_dir": str(data_dir)}
    if backend != "sqlite":
        storage["backend"] = backend  # the URL: in the .env beside the config
    sections: dict[str, dict[str, Any]] = {
        # All senders connect from 127.0.0.1, like an MTA in front: its 50 connections at once
        # are more than the 10 one source gets by default.
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "hostname": "ticketmail.bench.example",
            "max_sessions_per_ip": 100,
        },
        "storage": storage,
        # Every node its own portal port (several nodes run on one machine here).
        "web": {"port": procs.free_port()},
        "relay": {"transport": "smtp", "host": "127.0.0.1", "port": relay_port},
        # Every new ticket is confirmed, as with many distinct senders in production; the
        # default caps (10 per address and hour) would leave the outbox worker idle here.
        "policy": {
            "max_auto_replies_per_hour": NO_RATE_LIMIT,
            "max_auto_replies_per_ticket_per_hour": NO_RATE_LIMIT,
        },
        "log": {"level": "info", "format": "json"},
    }
    if node:
        sections["node"] = {"name": node}
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
class Group:
    """The servers one target's load goes to: one server, or ticketmail's nodes that share it
    (connections alternate between them, as an MTA's with as many next hops)."""

    name: str
    servers: list[procs.Server | PostfixServer]
    config: Path | None = None  # ticketmail's config (the first node's)
    database: str | None = None  # the PostgreSQL database, for ticketmail on PostgreSQL
    configs: tuple[Path, ...] = ()  # every node's config

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(s.port for s in self.servers)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    @property
    def log_paths(self) -> list[Path]:
        return [s.log_path for s in self.servers if isinstance(s, procs.Server)]

    def check_alive(self, *, during: str) -> None:
        for server in self.servers:
            server.check_alive(during=during)


@dataclass(slots=True)
class Bench:
    workdir: Path
    relay: procs.Server
    relay_count: Path
    senders: tuple[Sender, ...]
    groups: dict[str, Group]  # in the order they are measured in the first round
    pools: dict[str, TicketPool]
    run_id: str
    pg: PgSide | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets that get the load: the bare sink and ticketmail's front alone (backend
        sqlite or both), ticketmail on SQLite, on PostgreSQL with 1 or 2 nodes, and Postfix
        if running."""
        return tuple(self.groups)

    def target(self, name: str) -> Group:
        return self.groups[name]

    @property
    def ticketmail(self) -> procs.Server | PostfixServer:
        """ticketmail on SQLite (bench/soak.py's daemon)."""
        return self.groups[TICKETMAIL].servers[0]

    @property
    def postfix(self) -> Group | None:
        return self.groups.get(POSTFIX)

    @property
    def ticketmails(self) -> list[Group]:
        """ticketmail's groups: on SQLite, then on PostgreSQL."""
        return [g for g in self.groups.values() if g.config is not None]

    def relayed(self) -> int:
        """Mails the relay sink has received so far (its count file, 0.25 s behind)."""
        try:
            return int(self.relay_count.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    @property
    def all_pids(self) -> list[int]:
        pids = [self.relay.pid] + [pid for g in self.groups.values() for pid in g.pids]
        return pids + ([self.pg.postmaster] if self.pg is not None else [])

    def add_postfix(self, server: PostfixServer) -> None:
        self.groups[POSTFIX] = Group(POSTFIX, [server])
        self.pools[POSTFIX] = TicketPool()


def _start_ticketmail(
    name: str,
    where: tuple[Path, int],
    servers: list[procs.Server | PostfixServer],
    env: dict[str, str],
) -> procs.Server:
    config, port = where
    tm = procs.start(
        name,
        [PYTHON, "-m", "ticketmail", "--config", str(config), "serve"],
        port=port,
        log_path=config.parent / "ticketmail.log",
        env=env,
        cwd=config.parent,
    )
    servers.append(tm)
    return tm


def _ticketmail_config(
    directory: Path, *, relay_port: int, backend: str = "sqlite", url: str = "", node: str = ""
) -> tuple[Path, int]:
    """One node's config and SMTP port (on PostgreSQL also the .env with the database's URL
    beside the config, where ticketmail and its CLI look for it)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    port = procs.free_port()
    write_config(
        config,
        data_dir=directory / "data",
        port=port,
        relay_port=relay_port,
        backend=backend,
        node=node,
    )
    if url:
        (directory / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
    return config, port


def start_servers(
    workdir: Path,
    servers: list[procs.Server | PostfixServer],
    *,
    backend: str = "sqlite",
    nodes: Sequence[int] = (),
    pg: PgSide | None = None,
) -> Bench:
    """Relay sink, registration, ticketmail (on SQLite always: the baseline), with `backend`
    sqlite or both the bare sink and the front alone, with postgres or both ticketmail on
    PostgreSQL with each number of `nodes` (a database each); each appended to `servers`."""
    env = child_env()
    sink_script = str(BENCH / "sink.py")
    relay_port = procs.free_port()
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
    senders = make_senders(USERS, customers=CUSTOMERS)
    groups: dict[str, Group] = {}
    if backend in ("sqlite", "both"):
        for name, extra in ((SINK, []), (FRONT, ["--front", "ticketmail"])):
            port = procs.free_port()
            server = procs.start(
                "bare sink" if name == SINK else "ticketmail's front",
                [PYTHON, sink_script, "--port", str(port), *extra],
                port=port,
                log_path=workdir / f"{name}.log",
                env=env,
                cwd=workdir,
            )
            servers.append(server)
            groups[name] = Group(name, [server])
    config = _ticketmail_config(workdir / "sqlite", relay_port=relay_port)
    register(config[0], senders)
    tm = _start_ticketmail("ticketmail", config, servers, env)
    groups[TICKETMAIL] = Group(TICKETMAIL, [tm], config=config[0], configs=(config[0],))
    if backend in ("postgres", "both"):
        if pg is None:
            raise RuntimeError("ticketmail on PostgreSQL needs the benchmark's cluster")
        for count in nodes:
            name = pg_target(count)
            database = f"bench_{count}node"
            url = pg.create_database(database)
            configs = tuple(
                _ticketmail_config(
                    workdir / name / f"node{k + 1}",
                    relay_port=relay_port,
                    backend="postgres",
                    url=url,
                    node=f"node{k + 1}",
                )
                for k in range(count)
            )
            register(configs[0][0], senders)  # the nodes share the database: once
            started: list[procs.Server | PostfixServer] = []
            for k, node_config in enumerate(configs):
                started.append(
                    _start_ticketmail(f"ticketmail {name} node{k + 1}", node_config, servers, env)
                )
            paths = tuple(c for c, _ in configs)
            groups[name] = Group(name, started, config=paths[0], database=database, configs=paths)
    for server in servers:
        if isinstance(server, procs.Server):
            server.wait_port(seconds=START_SECONDS)
    return Bench(
        workdir=workdir,
        relay=relay,
        relay_count=relay_count,
        senders=senders,
        groups=groups,
        pools={name: TicketPool() for name in groups},
        run_id=f"b{time.time_ns():x}",
        pg=pg,
    )


def pg_target(nodes: int) -> str:
    """The target name of ticketmail on PostgreSQL with `nodes` nodes: pg-1node, pg-2nodes."""
    return f"pg-{nodes}node{'s' if nodes > 1 else ''}"


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
