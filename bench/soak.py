"""Soak: N batches of 10 KB mail into one ticketmail; its resident memory after each batch.

Issue 7's memory target: flat (within 10 %) between the first and the last 10,000 mails of a
50,000-mail run. Same stack as run.py (ticketmail, the bare sink, a relay sink; every sender
registered, rate limits lifted), one data dir for the whole run.

    .venv/bin/python bench/soak.py                    # 5 x 10,000 mails, 50 senders
    .venv/bin/python bench/soak.py --batches 2 --mails 2000 --senders 8
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import procs
from load import run_load
from postfix import PostfixServer
from report import TICKETMAIL
from stack import start_servers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--mails", type=int, default=10_000, help="mails per batch")
    parser.add_argument("--senders", type=int, default=50, help="concurrent connections")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="cap on one batch")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ticketmail-soak-"))
    servers: list[procs.Server | PostfixServer] = []
    try:
        bench = start_servers(workdir, servers)
        pid = bench.ticketmail.pid
        senders = bench.senders[: args.senders]
        print(f"soak: ticketmail pid {pid}, RSS at start {procs.rss_kib(pid) / 1024:.1f} MB")
        rows = []
        for batch in range(1, args.batches + 1):
            result = asyncio.run(
                run_load(
                    bench.ticketmail.port, size="10k", mails=args.mails, senders=senders,
                    pool=bench.pools[TICKETMAIL], tag=f"{bench.run_id}-soak{batch}",
                    max_seconds=args.max_seconds,
                )
            )  # fmt: skip
            procs.wait_idle(bench.all_pids, seconds=30.0)
            rss = procs.rss_kib(pid) / 1024
            rate = result.accepted / result.seconds if result.seconds else 0.0
            rows.append((batch * args.mails, rate, rss, result.accepted))
            print(f"soak: {batch * args.mails:>7} mails  {rate:7.1f} mails/s  RSS {rss:6.1f} MB"
                  f"  accepted {result.accepted}/{args.mails}", flush=True)  # fmt: skip
        first, last = rows[0][2], rows[-1][2]
        print(f"\nRSS after the first batch {first:.1f} MB, after the last {last:.1f} MB: "
              f"{(last - first) / first * 100:+.1f} %")  # fmt: skip
        return 0
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"soak: {time.monotonic() - started:.0f} s in all")
    sys.exit(status)
