"""The intake benchmark: ticketmail against a bare aiosmtpd sink, same workload, same run.

    .venv/bin/python bench/run.py [--rounds N] [--mails N] [--only 10k/8,200k] [--quick]
        [--backend sqlite|postgres|both] [--nodes 1|2|1,2]

Starts four subprocesses on 127.0.0.1 — the bare sink, ticketmail's SMTP front with nothing
behind it, a relay sink, and `ticketmail serve` with a fresh data dir relaying to that relay
sink — registers 50 senders of 5 institutions through ticketmail's own CLI, then sends every
workload to each server in turn, for several rounds, and prints mails/s, p50/p99 latency,
peak RSS and the ratios ticketmail/sink and front/sink with their spread over the rounds.
With `--backend postgres` ticketmail on SQLite (the baseline) and on a throwaway PostgreSQL
cluster with 1 and/or 2 nodes on one database, the load split across the nodes; CPU per mail
counts the database server's processes too, and a sampler counts the backends' lock waits.
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import postfix
import procs
from load import SIZES, run_load
from pgwatch import STATS_FLUSH_SECONDS, DbStats, PgSide
from report import (
    FRONT,
    POSTFIX,
    SINK,
    Measurement,
    backend_table,
    markdown_table,
    other_load,
    problems,
    progress_line,
    rows,
    scan_log,
)
from stack import START_SECONDS, Bench, machine, start_servers, ticketmail_cli

CONCURRENCY = (1, 8, 50)
DEFAULT_ROUNDS = 3
DEFAULT_MAILS = {"10k": 2000, "200k": 400}
QUICK_MAILS = {"10k": 100, "200k": 30}
SETTLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Workload:
    size: str
    senders: int

    @property
    def name(self) -> str:
        return f"{self.size}/{self.senders}"


ALL_WORKLOADS = tuple(Workload(size, c) for size in SIZES for c in CONCURRENCY)


def select(only: str | None) -> tuple[Workload, ...]:
    """Workloads named by `--only`: `10k/8`, a size (`200k`), or a concurrency (`*/50`)."""
    if not only:
        return ALL_WORKLOADS
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    chosen: list[Workload] = []
    for token in tokens:
        size, _, senders = token.partition("/")
        matches = [
            w
            for w in ALL_WORKLOADS
            if size in ("*", "", w.size) and senders in ("", "*", str(w.senders))
        ]
        if not matches:
            names = ", ".join(w.name for w in ALL_WORKLOADS)
            raise SystemExit(f"bench: --only {token!r} matches no workload ({names})")
        chosen.extend(w for w in matches if w not in chosen)
    return tuple(w for w in ALL_WORKLOADS if w in chosen)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--rounds", type=int, help=f"rounds per workload (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--mails",
        type=int,
        help="mails per workload per round and server "
        f"(default {DEFAULT_MAILS['10k']} of 10 KB, {DEFAULT_MAILS['200k']} of 200 KB)",
    )
    parser.add_argument("--quick", action="store_true", help="one small round: a smoke check")
    parser.add_argument("--only", metavar="W[,W]", help="e.g. 10k/8, 200k, */50")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="cap on one measurement (default 120)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement wait up to this long for the machine to be idle",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    parser.add_argument(
        "--postfix",
        choices=("auto", "no"),
        default="auto",
        help="also measure a private Postfix instance when installed and run as root (auto)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="sqlite: ticketmail against the sinks (and Postfix), as always; postgres: "
        "ticketmail on SQLite (the baseline) and on PostgreSQL; both: all of them",
    )
    parser.add_argument(
        "--nodes",
        default="1",
        metavar="1|2|1,2",
        help="ticketmail nodes on the one PostgreSQL database (1,2: both set-ups in one run)",
    )
    args = parser.parse_args(argv)
    try:
        args.nodes = tuple(sorted({int(n) for n in args.nodes.split(",")}))
    except ValueError:
        parser.error("--nodes: 1, 2 or 1,2")
    if not args.nodes or any(n not in (1, 2) for n in args.nodes):
        parser.error("--nodes: 1, 2 or 1,2")
    if args.backend == "sqlite" and args.nodes != (1,):
        parser.error("--nodes: ticketmail nodes on PostgreSQL; add --backend postgres (or both)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1 or (args.mails is not None and args.mails < 1):
        parser.error("--rounds and --mails must be at least 1")
    return args


def mails_for(size: str, args: argparse.Namespace) -> int:
    if args.mails is not None:
        return int(args.mails)
    return (QUICK_MAILS if args.quick else DEFAULT_MAILS)[size]


# --- measuring ----------------------------------------------------------------------------------


def measure(
    bench: Bench, workload: Workload, target: str, *, round_: int, args: argparse.Namespace
) -> Measurement:
    """One load run against one target (one server, or ticketmail's nodes sharing the load);
    its CPU (and its database server's), counted until it is idle again, and peak RSS."""
    group = bench.target(target)
    pg = bench.pg if group.database is not None else None
    database = group.database or ""
    procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    if args.wait_quiet > 0:
        procs.wait_quiet(seconds=args.wait_quiet)
    for pid in group.pids:
        procs.reset_peak_rss(pid)

    def cpu() -> float:
        return sum(procs.cpu_seconds(pid) for pid in group.pids)

    relayed_before = bench.relayed()
    relay_cpu_before = procs.cpu_seconds(bench.relay.pid)
    db_before = sampler_before = 0.0
    log_offset = 0
    if pg is not None:
        assert pg.sampler is not None
        log_offset = pg.log_offset()
        db_before = pg.cpu_seconds(database)
        sampler_before = procs.cpu_seconds(pg.sampler.pid)
        pg.sampler.start()
    busy_before, steal_before = procs.machine_cpu()
    cpu_before = cpu()
    result = asyncio.run(
        run_load(
            group.ports,
            size=workload.size,
            mails=mails_for(workload.size, args),
            senders=bench.senders[: workload.senders],
            pool=bench.pools[target],
            tag=f"{bench.run_id}-{workload.size}-{workload.senders}-r{round_}-{target}",
            max_seconds=args.max_seconds,
        )
    )
    group.check_alive(during=workload.name)
    cpu_load = cpu() - cpu_before
    busy_after, steal_after = procs.machine_cpu()
    relay_cpu = procs.cpu_seconds(bench.relay.pid) - relay_cpu_before
    ours = cpu_load + relay_cpu + result.client_cpu_seconds
    if pg is not None:
        assert pg.sampler is not None
        ours += pg.cpu_seconds(database) - db_before
        ours += procs.cpu_seconds(pg.sampler.pid) - sampler_before
    # The relay sink updates its count file every 0.25 s.
    time.sleep(0.3)
    backlog = None
    if group.config is not None:
        backlog = max(0, result.opened - (bench.relayed() - relayed_before))
    settle = procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    group.check_alive(during=workload.name)
    cpu_total = cpu() - cpu_before
    peak = sum(procs.peak_rss_kib(pid) for pid in group.pids)
    waits, db_cpu, errors = None, 0.0, {}
    if pg is not None:
        assert pg.sampler is not None
        waits = pg.sampler.stop(database)
        db_cpu = pg.cpu_seconds(database) - db_before
        errors = dict(pg.errors_since(log_offset))
    return Measurement(
        workload=workload.name,
        round=round_,
        target=target,
        result=result,
        peak_rss_kib=peak,
        server_cpu_seconds=cpu_load,
        server_cpu_total_seconds=cpu_total,
        settle_seconds=settle,
        other_cpu_seconds=max(0.0, busy_after - busy_before - ours),
        steal_seconds=steal_after - steal_before,
        backlog=backlog,
        db_cpu_total_seconds=db_cpu,
        waits=waits,
        db_errors=errors,
    )


def warm_up(bench: Bench) -> None:
    """A few unmeasured mails to each server: imports, templates, SQLite pages, sockets."""
    for target in bench.targets:
        for size, mails in (("10k", 20), ("200k", 6)):
            result = asyncio.run(
                run_load(
                    bench.target(target).ports,
                    size=size,
                    mails=mails,
                    senders=bench.senders[:2],
                    pool=bench.pools[target],
                    tag=f"{bench.run_id}-warm-{size}-{target}",
                    max_seconds=60.0,
                )
            )
            if result.accepted != mails:
                print(f"warm-up {target} {size}: {dict(result.codes)} {dict(result.errors)}")


# --- the report ---------------------------------------------------------------------------------


def final_state(bench: Bench) -> dict[str, dict[str, Any]]:
    """Per ticketmail set-up: its outbox and quarantine after the run, read by its CLI."""
    procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    state: dict[str, dict[str, Any]] = {}
    for group in bench.ticketmails:
        assert group.config is not None
        outbox = json.loads(ticketmail_cli(group.config, "outbox", "list", "--json"))
        quarantine = json.loads(ticketmail_cli(group.config, "quarantine", "list", "--json"))
        state[group.name] = {
            "outbox": Counter(str(e["status"]) for e in outbox),
            "quarantine": len(quarantine),
        }
    return state


def print_report(
    bench: Bench,
    measurements: Sequence[Measurement],
    workloads: Sequence[Workload],
    state: dict[str, dict[str, Any]],
    info: dict[str, str],
    db_stats: dict[str, DbStats],
) -> None:
    mount, fstype = procs.mount_of(bench.workdir)
    names = [w.name for w in workloads]
    print("\n## Machine\n")
    print(", ".join(f"{k} {v}" for k, v in info.items()) + f", data dir on {fstype} ({mount})")
    if SINK in bench.targets:
        print("\n## Figures (medians over rounds; RSS is the largest peak)\n")
        print(markdown_table(rows(measurements, names)))
    if bench.postfix is not None:
        print("\n### The same against Postfix (a private instance, queue fsync'd, then discard)\n")
        table = rows(measurements, names, base=POSTFIX)
        print(markdown_table(table, base=POSTFIX))
    if FRONT in bench.targets:
        print("\n### ticketmail's SMTP front alone (nothing behind DATA) against the sink\n")
        table = rows(measurements, names, subject=FRONT)
        print(markdown_table(table, subject=FRONT))
    if bench.pg is not None:
        targets = [g.name for g in bench.ticketmails]
        nodes = {g.name: len(g.servers) for g in bench.ticketmails}
        print("\n## ticketmail on SQLite and on PostgreSQL (medians over rounds)\n")
        print(backend_table(measurements, names, targets, nodes))
        print(
            "\nLock-wait samples: pg_stat_activity every 20 ms from the load's start until "
            "idle again; a backend of the set-up's database seen waiting on a Lock counts once "
            "per sample (advisory write lock: a trip that runs alone, or waits for one; advisory "
            "key: two nodes' jobs on one ticket or Message-ID; relation, tuple, transactionid: "
            "rows and tables). Server ERRORs: lines of the cluster's log meanwhile."
        )
        print("\npg_stat_database over the whole run (registration and warm-up included):")
        for database, stats in db_stats.items():
            print(f"  {database}: {stats.text()}")
    print(f"\n{other_load(measurements)}")
    print("\n## ticketmail after the run\n")
    sent = 0
    logs = {}
    for group in bench.ticketmails:
        log = scan_log(group.log_paths[0])
        for path in group.log_paths[1:]:
            more = scan_log(path)
            log.events.update(more.events)
            log.outcomes.update(more.outcomes)
            log.not_json.extend(more.not_json)
            for key, sample in more.samples.items():
                log.samples.setdefault(key, sample)
        logs[group.name] = log
        sent += log.count("outbox_sent")
        repeats = log.count("outbox_sent") - sum(state[group.name]["outbox"].values())
        print(
            f"{group.name}: outcomes {dict(log.outcomes)}; confirmations queued "
            f"{log.count('notice_queued')}, sent {log.count('outbox_sent')}; outbox "
            f"{dict(state[group.name]['outbox'])}; quarantine {state[group.name]['quarantine']}"
            + (
                f"; SENT MORE THAN ONCE: {repeats} deliveries beyond the outbox's rows"
                if repeats > 0
                else ""
            )
        )
    print(f"confirmations sent in all {sent}, arrived at the relay sink {bench.relayed()}")
    troubles = problems(measurements)
    print("\n## Problems seen by the load generator\n")
    print("\n".join(troubles) if troubles else "none")
    print("\n## Warnings and errors in ticketmail's log\n")
    quiet = True
    for name, log in logs.items():
        for key, count in log.troubles():
            quiet = False
            print(f"{count:6d}  {name}: {key[0]} {key[1]}\n        e.g. {log.samples.get(key, '')}")
        for line in log.not_json:
            quiet = False
            print(f"        {name} not JSON: {line}")
    if quiet:
        print("none")


def run(
    args: argparse.Namespace,
    workloads: Sequence[Workload],
    servers: list[procs.Server | postfix.PostfixServer],
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ticketmail-bench-"))
    started = time.monotonic()
    pg: PgSide | None = None
    try:
        _, fstype = procs.mount_of(workdir)
        if fstype in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fstype}: fsync costs nothing there")
        print(f"bench: work dir {workdir} ({fstype}), python {platform.python_version()}")
        if args.backend != "sqlite":
            pg = PgSide()
            _, pg_fstype = procs.mount_of(pg.cluster.data_dir)
            print(
                f"bench: PostgreSQL {pg.version()} in {pg.cluster.data_dir} ({pg_fstype}), "
                f"fsync on, postmaster pid {pg.postmaster}"
            )
        bench = start_servers(workdir, servers, backend=args.backend, nodes=args.nodes, pg=pg)
        stats_before = {g.database: pg.stats(g.database) for g in bench.ticketmails if g.database}
        for group in bench.groups.values():
            where = ", ".join(f"pid {s.pid} port {s.port}" for s in group.servers)
            print(f"bench: {group.name}: {where}")
        print(f"bench: relay sink port {bench.relay.port}")
        why_not = postfix.unavailable() if args.postfix == "auto" else "--postfix no"
        if args.backend == "postgres":
            why_not = "--backend postgres (ticketmail on SQLite is the baseline)"
        if why_not is None:
            pf = postfix.start_postfix(
                workdir / "postfix", procs.free_port(), seconds=START_SECONDS
            )
            servers.append(pf)
            bench.add_postfix(pf)
            print(f"bench: postfix master pid {pf.pid} port {pf.port}")
        else:
            print(f"bench: Postfix not measured: {why_not}")
        warm_up(bench)
        measurements: list[Measurement] = []
        for workload in workloads:
            for round_ in range(args.rounds):
                # Each round starts with the next server: every one goes first as often.
                shift = round_ % len(bench.targets)
                order = bench.targets[shift:] + bench.targets[:shift]
                for target in order:
                    m = measure(bench, workload, target, round_=round_, args=args)
                    measurements.append(m)
                    print(progress_line(m), flush=True)
        state = final_state(bench)
        info = machine()
        db_stats: dict[str, DbStats] = {}
        if pg is not None:
            info["postgresql"] = pg.version()
            time.sleep(STATS_FLUSH_SECONDS)  # idle backends' statistics reach pg_stat_database
            db_stats = {name: pg.stats(name).minus(b) for name, b in stats_before.items()}
        print_report(bench, measurements, workloads, state, info, db_stats)
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": info,
                        "measurements": [m.as_json() for m in measurements],
                        "outbox": {k: dict(v["outbox"]) for k, v in state.items()},
                        "relayed": bench.relayed(),
                        "pg_stat_database": {k: v.values for k, v in db_stats.items()},
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
        print(f"\nbench: {time.monotonic() - started:.0f} s in all")
        return 0
    finally:
        for server in reversed(servers):
            status = server.stop()
            if status not in (0, -signal.SIGTERM):
                print(f"bench: {server.name} exited with status {status}", file=sys.stderr)
        servers.clear()
        if pg is not None:
            if args.keep and pg.cluster.log_file.exists():  # the server's log with the rest
                shutil.copy(pg.cluster.log_file, workdir / "postgresql.log")
            pg.stop()
        if args.keep:
            print(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM takes the Ctrl-C path: asyncio.run turns SIGINT into a clean cancellation."""
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = select(args.only)
    # Ctrl-C works even where the shell started us with SIGINT ignored (`cmd &` in a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    servers: list[procs.Server | postfix.PostfixServer] = []
    try:
        return run(args, workloads, servers)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
