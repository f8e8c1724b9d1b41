"""The intake benchmark: ticketmail against a bare aiosmtpd sink, same workload, same run.

    .venv/bin/python bench/run.py [--rounds N] [--mails N] [--only 10k/8,200k] [--quick]

Starts four subprocesses on 127.0.0.1 — the bare sink, ticketmail's SMTP front with nothing
behind it, a relay sink, and `ticketmail serve` with a fresh data dir relaying to that relay
sink — registers 50 senders of 5 institutions through ticketmail's own CLI, then sends every
workload to each server in turn, for several rounds, and prints mails/s, p50/p99 latency,
peak RSS and the ratios ticketmail/sink and front/sink with their spread over the rounds.
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
from report import (
    FRONT,
    POSTFIX,
    TICKETMAIL,
    Measurement,
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
    args = parser.parse_args(argv)
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
    """One load run against one server; its CPU, counted until it is idle again, and peak RSS."""
    server = bench.target(target)
    procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    if args.wait_quiet > 0:
        procs.wait_quiet(seconds=args.wait_quiet)
    procs.reset_peak_rss(server.pid)
    relayed_before = bench.relayed()
    relay_cpu_before = procs.cpu_seconds(bench.relay.pid)
    busy_before, steal_before = procs.machine_cpu()
    cpu_before = procs.cpu_seconds(server.pid)
    result = asyncio.run(
        run_load(
            server.port,
            size=workload.size,
            mails=mails_for(workload.size, args),
            senders=bench.senders[: workload.senders],
            pool=bench.pools[target],
            tag=f"{bench.run_id}-{workload.size}-{workload.senders}-r{round_}-{target}",
            max_seconds=args.max_seconds,
        )
    )
    server.check_alive(during=workload.name)
    cpu_load = procs.cpu_seconds(server.pid) - cpu_before
    busy_after, steal_after = procs.machine_cpu()
    relay_cpu = procs.cpu_seconds(bench.relay.pid) - relay_cpu_before
    # The relay sink updates its count file every 0.25 s.
    time.sleep(0.3)
    backlog = None
    if target == TICKETMAIL:
        backlog = max(0, result.opened - (bench.relayed() - relayed_before))
    settle = procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    server.check_alive(during=workload.name)
    cpu_total = procs.cpu_seconds(server.pid) - cpu_before
    peak = procs.peak_rss_kib(server.pid)
    ours = cpu_load + relay_cpu + result.client_cpu_seconds
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
    )


def warm_up(bench: Bench) -> None:
    """A few unmeasured mails to each server: imports, templates, SQLite pages, sockets."""
    for target in bench.targets:
        for size, mails in (("10k", 20), ("200k", 6)):
            result = asyncio.run(
                run_load(
                    bench.target(target).port,
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


def final_state(bench: Bench) -> dict[str, Any]:
    """ticketmail's outbox and quarantine after the run, the relay sink's count, the log."""
    procs.wait_idle(bench.all_pids, seconds=SETTLE_SECONDS)
    outbox = json.loads(ticketmail_cli(bench.config, "outbox", "list", "--json"))
    quarantine = json.loads(ticketmail_cli(bench.config, "quarantine", "list", "--json"))
    return {
        "outbox": Counter(str(e["status"]) for e in outbox),
        "quarantine": len(quarantine),
        "relayed": bench.relayed(),
    }


def print_report(
    bench: Bench,
    measurements: Sequence[Measurement],
    workloads: Sequence[Workload],
    state: dict[str, Any],
    info: dict[str, str],
) -> None:
    mount, fstype = procs.mount_of(bench.workdir)
    print("\n## Machine\n")
    print(", ".join(f"{k} {v}" for k, v in info.items()) + f", data dir on {fstype} ({mount})")
    print("\n## Figures (medians over rounds; RSS is the largest peak)\n")
    print(markdown_table(rows(measurements, [w.name for w in workloads])))
    if bench.postfix is not None:
        print("\n### The same against Postfix (a private instance, queue fsync'd, then discard)\n")
        table = rows(measurements, [w.name for w in workloads], base=POSTFIX)
        print(markdown_table(table, base=POSTFIX))
    print("\n### ticketmail's SMTP front alone (nothing behind DATA) against the sink\n")
    table = rows(measurements, [w.name for w in workloads], subject=FRONT)
    print(markdown_table(table, subject=FRONT))
    print(f"\n{other_load(measurements)}")
    print("\n## ticketmail after the run\n")
    log = scan_log(bench.ticketmail.log_path)
    print(f"outcomes {dict(log.outcomes)}")
    print(
        f"confirmations queued {log.count('notice_queued')}, sent {log.count('outbox_sent')}, "
        f"arrived at the relay sink {state['relayed']}; outbox {dict(state['outbox'])}; "
        f"quarantine {state['quarantine']}"
    )
    troubles = problems(measurements)
    print("\n## Problems seen by the load generator\n")
    print("\n".join(troubles) if troubles else "none")
    print("\n## Warnings and errors in ticketmail's log\n")
    for key, count in log.troubles():
        print(f"{count:6d}  {key[0]} {key[1]}\n        e.g. {log.samples.get(key, '')}")
    for line in log.not_json:
        print(f"        not JSON: {line}")
    if not log.troubles() and not log.not_json:
        print("none")


def run(
    args: argparse.Namespace,
    workloads: Sequence[Workload],
    servers: list[procs.Server | postfix.PostfixServer],
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ticketmail-bench-"))
    started = time.monotonic()
    try:
        _, fstype = procs.mount_of(workdir)
        if fstype in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fstype}: fsync costs nothing there")
        print(f"bench: work dir {workdir} ({fstype}), python {platform.python_version()}")
        bench = start_servers(workdir, servers)
        print(
            f"bench: ticketmail pid {bench.ticketmail.pid} port {bench.ticketmail.port}, "
            f"sink pid {bench.sink.pid} port {bench.sink.port}, relay port {bench.relay.port}"
        )
        why_not = postfix.unavailable() if args.postfix == "auto" else "--postfix no"
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
        print_report(bench, measurements, workloads, state, info)
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": info,
                        "measurements": [m.as_json() for m in measurements],
                        "outbox": dict(state["outbox"]),
                        "relayed": state["relayed"],
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
