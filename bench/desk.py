"""The desk under load: 10 logged-in agents against the portal benchmark's database (100,000
tickets, 400,000 articles, 500 institutions), beside a bare Starlette page in the same run.

    .venv/bin/python bench/desk.py [--tickets 100000] [--agents 10] [--requests 40]

Measures, per page, the latency of each request (client side, over real HTTP on 127.0.0.1,
through bench/rawhttp.py's lean client unless --client httpx):
the queue's first page (/desk), /desk?q=word (a word of bench/web.py's, in almost every
article),
/desk?q=rare (a word in one article) and a bare Starlette page served by uvicorn in a process
of its own; also /desk?q=100042 (a ticket number), and the queue in each of its other orders
(/desk?sort=..., issue 24; each also timed in-process with SQLite's plan). Prints p50, p99
and max. Not part of the tests.

    .venv/bin/python bench/desk.py --part team [--rounds 3] [--posts 200]

A desk for a team (SPEC 9.1): what the `seen` check and the history cost. In one run, on the
same database and daemon, pages measured in alternating rounds (A B A B ...):
the 50-article ticket without history (A) and a copy of it with 5 changes of status and
owner (B); the queue's first page with no history rows (A) and with 3 on every ticket (B);
then the ticket with 50 articles and 50 history events at 10 agents at once, beside the
bare page. For the POST: 10 x `--posts` owner changes (`/assign`, the cheapest desk POST:
no mail, so the check's and the history's share of it is the largest) timed over HTTP, one
agent at a time, and the `seen` check plus the history row (storage/desk.py `refusal`,
storage/tickets.py `record_change`) timed alone in-process on the same database, each in a
transaction rolled back: their share of the POST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import procs
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

from ticketmail.storage.desk import SORTS as SORTS_SQL
from ticketmail.storage.desk import queue, refusal
from ticketmail.storage.paths import DB_NAME
from ticketmail.storage.search import index_some
from ticketmail.storage.tickets import record_change
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
        *((f"/desk?sort={sort}", clients, [f"/desk?sort={sort}"] * len(emails), args.requests)
          for sort in args.sorts),
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


SORTS = ("number", "-number", "activity", "status", "customer")  # besides -activity


def sorted_queue_ms(data_dir: Path, sorts: list[str]) -> list[dict[str, object]]:
    """The queue's first page in each order timed in-process (no load; median of 20), with
    SQLite's plan for its page query: an index walked, or a sort of every ticket."""
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    rows: list[dict[str, object]] = []
    for sort in ("-activity", *sorts):
        times = []
        for _ in range(20):
            started = time.perf_counter()
            queue(conn, status=None, customer=None, owner=None, q="", limit=50, offset=0,
                  sort=sort)  # fmt: skip
            times.append((time.perf_counter() - started) * 1000)
        order = SORTS_SQL[sort]
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT t.number FROM tickets t WHERE t.status != 'merged' "  # noqa: S608 - fixed fragments
            f"ORDER BY {order} LIMIT 50"
        ).fetchall()
        median = round(statistics.median(times), 2)
        rows.append({"query": f"desk.queue sort={sort}", "median_ms": median,
                     "plan": "; ".join(str(r[3]) for r in plan)})  # fmt: skip
    conn.close()
    return rows


@contextlib.contextmanager
def serving(tmp: Path, data_dir: Path) -> Iterator[tuple[int, int]]:
    """The daemon on `data_dir` and a bare Starlette page, each a process of its own, until
    the block ends: (the daemon's web port, the bare page's port)."""
    web_port, bare_port = free_port(), free_port()
    config = tmp / "config.toml"
    config.write_text(
        f'[smtp]\nport = 0\nworkers = 0\n[storage]\ndata_dir = "{data_dir}"\n'
        f'[web]\nport = {web_port}\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    (tmp / "bare.py").write_text(BARE_APP, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp)}
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
        yield web_port, bare_port
    finally:
        daemon.terminate()
        bare.terminate()
        daemon.wait(timeout=30)
        bare.wait(timeout=30)


# --- a desk for a team: the seen check and the history -----------------------------------------

BIG_HISTORY = 50  # history events of the ticket measured at 10 agents (the figure)
SOME_HISTORY = 5  # a ticket's changes of status and owner in the with/without comparison
QUEUE_HISTORY = 3  # history rows per ticket in the queue's "with history" rounds
_STATUS_CYCLE = ("open", "answered", "closed", "open")


def copies_of(data_dir: Path, number: int, count: int) -> list[int]:
    """`count` copies of ticket `number` with all its articles, numbered after the last."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        last = int(conn.execute("SELECT max(number) FROM tickets").fetchone()[0])
        numbers = [last + 1 + i for i in range(count)]
        for copy in numbers:
            conn.execute(
                "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
                "updated_at) SELECT ?, customer, requester, subject, status, created_at, "
                "updated_at FROM tickets WHERE number = ?",
                (copy, number),
            )
            conn.execute(
                "INSERT INTO articles(ticket, direction, automatic, sender, to_json, cc_json, "
                "subject, message_id, in_reply_to, references_json, body_text, reply_text, "
                "created_at) SELECT ?, direction, automatic, sender, to_json, cc_json, "
                "subject, message_id, in_reply_to, references_json, body_text, reply_text, "
                "created_at FROM articles WHERE ticket = ? ORDER BY id",
                (copy, number),
            )
        while index_some(conn):
            pass
    conn.close()
    return numbers


def add_history(
    conn: sqlite3.Connection, numbers: list[int], events: int, agents: list[str]
) -> None:
    """`events` changes of status and owner on each ticket, as the desk records them."""
    now = datetime(2026, 11, 2, tzinfo=UTC)
    for number in numbers:
        owner: str | None = None
        for i in range(events):
            by = agents[i % len(agents)]
            at = now + timedelta(minutes=i)
            if i % 2:
                record_change(conn, number, "owner", owner, by, by=by, now=at)
                owner = by
            else:
                old, new = _STATUS_CYCLE[(i // 2) % 3], _STATUS_CYCLE[(i // 2) % 3 + 1]
                record_change(conn, number, "status", old, new, by=by, now=at)


def history_rows(data_dir: Path, numbers: list[int], events: int, agents: list[str]) -> float:
    """Write the history rows (see add_history) through a connection of its own; seconds."""
    started = time.monotonic()
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=60)
    with conn:
        add_history(conn, numbers, events, agents)
    conn.close()
    return time.monotonic() - started


def drop_history(data_dir: Path, keep: list[int]) -> None:
    """Delete every history row but those of tickets `keep`."""
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=60)
    marks = ",".join("?" * len(keep))
    with conn:
        conn.execute(f"DELETE FROM ticket_history WHERE ticket NOT IN ({marks})", keep)  # noqa: S608 - marks only
    conn.close()


def team_write_ms(data_dir: Path, numbers: list[int], agent: str, count: int) -> list[float]:
    """The seen check and the history row of one desk action, alone: `refusal` and
    `record_change` in a transaction that is rolled back; milliseconds each."""
    conn = sqlite3.connect(data_dir / DB_NAME, isolation_level=None, timeout=60)
    now = datetime(2026, 11, 3, tzinfo=UTC)
    took = []
    for i in range(count):
        number = numbers[i % len(numbers)]
        conn.execute("BEGIN IMMEDIATE")
        start = time.perf_counter()
        refusal(conn, number, seen=1_000_000, force=False)
        record_change(conn, number, "owner", None, agent, by=agent, now=now)
        took.append((time.perf_counter() - start) * 1000)
        conn.execute("ROLLBACK")
    conn.close()
    return took


async def post_ms(base: str, email: str, numbers: list[int], count: int) -> list[float]:
    """`count` owner changes (the agent takes a ticket, then gives it up), each on a ticket
    page's form as the desk sends it (its csrf token and `seen`), one at a time."""
    client = await login(base, email)
    page = await client.get(f"/desk/tickets/{numbers[0]}")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    took = []
    for i in range(count):
        number = numbers[i % len(numbers)]
        agent = email if (i // len(numbers)) % 2 == 0 else ""
        form = {"csrf_token": token, "agent": agent, "seen": "1000000"}  # passes the check
        start = time.perf_counter()
        response = await client.post(f"/desk/tickets/{number}/assign", data=form)
        took.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 303, response.status_code
    await client.aclose()
    return took


QUIET: list[str] = []  # per measured block: how long it waited for a quiet machine


async def quiet(seconds: float, what: str, clients: list[Any]) -> None:
    """Wait (at most `seconds`) until the machine is quiet (bench/procs.py), and note it;
    the clients then connect anew (the server closes idle keep-alive connections)."""
    waited = await asyncio.to_thread(procs.wait_quiet, seconds=seconds)
    for client in clients:
        await client.aclose()
    state = "busy" if waited >= seconds else "quiet"
    QUIET.append(f"{what}: {state} after {waited:.1f} s")
    print(f"# {QUIET[-1]}", file=sys.stderr)


async def alternate(
    clients: list[Any], pages: dict[str, str], rounds: int, requests: int, wait: float,
    between: dict[str, Any] | None = None,
) -> dict[str, list[float]]:  # fmt: skip
    """Each page asked by every client at once, `requests` times, in turn (A B A B ...) for
    `rounds` rounds; before a page's round, `between[name]()` (a change of the database)
    and a wait for a quiet machine."""
    found: dict[str, list[float]] = {name: [] for name in pages}
    for round_ in range(rounds):
        for name, path in pages.items():
            if between and name in between:
                await asyncio.to_thread(between[name])
            await quiet(wait, f"{name} round {round_ + 1}", clients)
            paths = [path] * len(clients)
            await measure(clients, paths, 2)  # warm up
            found[name] += await measure(clients, paths, requests)
    return found


def ratio(base: list[float], other: list[float]) -> float:
    return round(statistics.median(other) / statistics.median(base), 3)


async def run_team(
    args: argparse.Namespace,
    data_dir: Path,
    emails: list[str],
    tickets: dict[str, int],
    ports: tuple[int, int],
) -> list[dict[str, object]]:
    web_port, bare_port = ports
    base = f"http://127.0.0.1:{web_port}"
    agents = [await raw_login("127.0.0.1", web_port, e) for e in emails]
    bare = [RawClient("127.0.0.1", bare_port) for _ in emails]
    rows: list[dict[str, object]] = []
    # (1) the ticket page with and without history; the queue with and without history rows
    pages = {"A": f"/desk/tickets/{tickets['none']}", "B": f"/desk/tickets/{tickets['some']}"}
    found = await alternate(agents, pages, args.rounds, args.requests, args.wait_quiet)
    rows.append(summary("ticket page, 50 articles, no history (A)", found["A"]))
    rows.append(summary(f"ticket page, 50 articles, {SOME_HISTORY} history events (B)", found["B"]))
    rows.append({"compare": "ticket page B/A", "p50_ratio": ratio(found["A"], found["B"])})
    everyone = list(range(100001, 100001 + args.tickets))
    keep = list(tickets.values())
    queue = {"A": "/desk", "B": "/desk"}
    found = await alternate(agents, queue, args.rounds, args.requests, args.wait_quiet, between={
        "A": lambda: drop_history(data_dir, keep),
        "B": lambda: history_rows(data_dir, everyone, QUEUE_HISTORY, emails),
    })  # fmt: skip
    rows.append(summary("/desk, no history rows (A)", found["A"]))
    rows.append(summary(f"/desk, {QUEUE_HISTORY} history rows on every ticket (B)", found["B"]))
    rows.append({"compare": "/desk B/A", "p50_ratio": ratio(found["A"], found["B"])})
    drop_history(data_dir, keep)
    # (2) the ticket with 50 articles and 50 history events at 10 agents, beside a bare page
    big = {"bare": ("bare Starlette page", bare, "/"),
           "big": (f"ticket page, 50 articles, {BIG_HISTORY} history events", agents,
                   f"/desk/tickets/{tickets['big']}")}  # fmt: skip
    for round_ in range(args.rounds):
        for name, (_, group, path) in big.items():
            await quiet(args.wait_quiet, f"{name} round {round_ + 1}", group)
            paths = [path] * len(group)
            await measure(group, paths, 2)
            found.setdefault(name, []).extend(await measure(group, paths, args.requests))
    rows.append(summary(big["bare"][0], found["bare"]))
    rows.append(summary(big["big"][0], found["big"]))
    rows.append({"compare": "50/50 ticket page / bare page",
                 "p50_ratio": ratio(found["bare"], found["big"])})  # fmt: skip
    for c in agents + bare:
        await c.aclose()
    # the POST, and the check and history row alone
    numbers = [n for n in range(100001, 100001 + args.tickets, args.tickets // 20)][:20]
    await quiet(args.wait_quiet, "POST", [])
    took = await post_ms(base, emails[0], numbers, args.posts)
    await quiet(args.wait_quiet, "check + history alone", [])
    alone = team_write_ms(data_dir, numbers, emails[0], args.posts * 5)
    rows.append(summary("POST /desk/tickets/N/assign (one agent, one at a time)", took))
    rows.append({"page": "seen check + history row alone (in-process)", "requests": len(alone),
                 "p50_us": round(statistics.median(alone) * 1000, 1),
                 "p99_us": round(sorted(alone)[int(len(alone) * 0.99)] * 1000, 1)})  # fmt: skip
    rows.append({"compare": "check + history / POST", "p50_ratio": ratio(took, alone)})
    rows.append({"machine": QUIET})
    return rows


def team(args: argparse.Namespace) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="tm-bench-desk-team-") as tmp:
        data_dir = Path(tmp) / "var"
        started = time.monotonic()
        populate(data_dir, tickets=args.tickets, institutions=args.institutions,
                 articles=args.articles)  # fmt: skip
        emails = add_agents(data_dir, args.agents)
        big = 100001 + (args.tickets - args.institutions)  # bench/web.py's 50-article ticket
        some, with_big = copies_of(data_dir, big, 2)
        history_rows(data_dir, [some], SOME_HISTORY, emails)
        history_rows(data_dir, [with_big], BIG_HISTORY, emails)
        tickets = {"none": big, "some": some, "big": with_big}
        print(f"# populated in {time.monotonic() - started:.1f} s", file=sys.stderr)
        with serving(Path(tmp), data_dir) as ports:
            return asyncio.run(run_team(args, data_dir, emails, tickets, ports))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=("queue", "team"), default="queue")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=400_000)
    parser.add_argument("--institutions", type=int, default=500)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40, help="per agent and page (round)")
    parser.add_argument(
        "--common-requests",
        type=int,
        default=40,
        help="per agent for the common word (a word in 98 %% of the articles)",
    )
    parser.add_argument(
        "--sorts",
        nargs="*",
        default=list(SORTS),
        help="queue: the queue's orders measured besides the default (issue 24)",
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: bench/rawhttp.py's lean client (default), or httpx")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="team: rounds of A and B")
    parser.add_argument("--posts", type=int, default=200, help="team: owner changes timed")
    quiet_help = "team: wait (at most this long) for a quiet machine before each block"
    parser.add_argument("--wait-quiet", type=float, default=30.0, help=quiet_help)
    args = parser.parse_args()
    if args.part == "team":
        results = team(args)
    else:
        with tempfile.TemporaryDirectory(prefix="tm-bench-desk-") as tmp:
            data_dir = Path(tmp) / "var"
            started = time.monotonic()
            populate(data_dir, tickets=args.tickets, institutions=args.institutions,
                     articles=args.articles)  # fmt: skip
            emails = add_agents(data_dir, args.agents)
            print(f"# populated in {time.monotonic() - started:.1f} s", file=sys.stderr)
            in_process = sorted_queue_ms(data_dir, args.sorts)
            with serving(Path(tmp), data_dir) as (web_port, bare_port):
                results = asyncio.run(run(args, emails, web_port, bare_port)) + in_process
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
