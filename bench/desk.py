"""The desk under load: 10 logged-in agents against the portal benchmark's database (100,000
tickets, 400,000 articles, 500 institutions), beside a bare Starlette page in the same run.

    .venv/bin/python bench/desk.py [--tickets 100000] [--agents 10] [--requests 40]

Measures, per page, the latency of each request (client side, over real HTTP on 127.0.0.1,
through bench/rawhttp.py's lean client unless --client httpx):
the queue's first page (/desk), /desk?q=word (a word of bench/web.py's, in almost every
article),
/desk?q=rare (a word in one article) and a bare Starlette page served by uvicorn in a process
of its own; also /desk?q=100042 (a ticket number). Prints p50, p99 and max. Not part of the
tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rawhttp import RawClient
from web import (
    BARE_APP,
    PASSWORD,
    REPO,
    WORDS,
    free_port,
    login,
    measure,
    populate,
    raw_login,
    summary,
    wait_for,
)

from ticketmail.storage.paths import DB_NAME
from ticketmail.web.security import hash_password

RARE = "Zylinderkopfdichtung"


def add_agents(data_dir: Path, count: int) -> list[str]:
    """`count` agents with the benchmark's password, and one rare word in one article."""
    emails = [f"agent{i}@stueber.example" for i in range(count)]
    digest = hash_password(PASSWORD)
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.executemany(
            "INSERT INTO agents(email, name, created_at, lang) VALUES (?, ?, '2026-11-01', 'de')",
            [(e, f"Agent {i}") for i, e in enumerate(emails)],
        )
        conn.executemany(
            "INSERT INTO passwords(email, hash, changed_at) VALUES (?, ?, '2026-11-01')",
            [(e, digest) for e in emails],
        )
        conn.execute(
            "UPDATE articles SET body_text = body_text || ' ' || ? WHERE id = 4711", (RARE,)
        )
    conn.close()
    return emails


async def run(args: argparse.Namespace, emails: list[str], web_port: int,
              bare_port: int) -> list[dict[str, object]]:  # fmt: skip
    base = f"http://127.0.0.1:{web_port}"
    clients: list[Any]
    bare: list[Any]
    if args.client == "raw":
        clients = [await raw_login("127.0.0.1", web_port, e) for e in emails]
        bare = [RawClient("127.0.0.1", bare_port) for _ in emails]
    else:
        clients = [await login(base, e) for e in emails]
        bare = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{bare_port}") for _ in emails]
    results = []
    for name, group, paths, requests in (
        ("bare Starlette page", bare, ["/"] * len(emails), args.requests),
        ("/desk (first page)", clients, ["/desk"] * len(emails), args.requests),
        ("/desk?q=word (rare)", clients, [f"/desk?q={RARE}"] * len(emails), args.requests),
        ("/desk?q=number", clients, ["/desk?q=100042"] * len(emails), args.requests),
        ("/desk?q=word (common)", clients,
         [f"/desk?q={WORDS[i % len(WORDS)]}" for i in range(len(emails))], args.common_requests),
    ):  # fmt: skip
        await measure(group, paths, 1 if requests < 10 else 3)  # warm up
        results.append(summary(name, await measure(group, paths, requests)))
    for c in clients + bare:
        await c.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=400_000)
    parser.add_argument("--institutions", type=int, default=500)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40, help="per agent and page")
    parser.add_argument(
        "--common-requests",
        type=int,
        default=40,
        help="per agent for the common word (a word in 98 %% of the articles)",
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: bench/rawhttp.py's lean client (default), or httpx")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tm-bench-desk-") as tmp:
        data_dir = Path(tmp) / "var"
        started = time.monotonic()
        populate(data_dir, tickets=args.tickets, institutions=args.institutions,
                 articles=args.articles)  # fmt: skip
        emails = add_agents(data_dir, args.agents)
        print(f"# populated in {time.monotonic() - started:.1f} s", file=sys.stderr)
        web_port, bare_port = free_port(), free_port()
        config = Path(tmp) / "config.toml"
        config.write_text(
            f'[smtp]\nport = 0\nworkers = 0\n[storage]\ndata_dir = "{data_dir}"\n'
            f'[web]\nport = {web_port}\n[log]\nlevel = "warning"\n',
            encoding="utf-8",
        )
        (Path(tmp) / "bare.py").write_text(BARE_APP, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": tmp}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ticketmail", "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        bare = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(bare_port),
             "--log-level", "warning", "--no-access-log"], env=env,
        )  # fmt: skip
        try:
            wait_for(web_port)
            wait_for(bare_port)
            results = asyncio.run(run(args, emails, web_port, bare_port))
        finally:
            daemon.terminate()
            bare.terminate()
            daemon.wait(timeout=30)
            bare.wait(timeout=30)
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
