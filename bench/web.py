"""The portal under load: 20 logged-in clients against a database of 100,000 tickets and
400,000 articles across 500 institutions, beside a bare Starlette page in the same run.

    .venv/bin/python bench/web.py [--tickets 100000] [--clients 20] [--requests 40]
        [--intake-mails 1500] [--intake-rounds 2] [--views-per-second 50] [--wait-quiet 30]
        [--backend sqlite|postgres]

With `--backend postgres` the same database is also written into a throwaway PostgreSQL
cluster (tests/pgcluster.py) and served by a second daemon on it; every page is measured on
SQLite and then on PostgreSQL, page by page, and the ratio PostgreSQL/SQLite printed.

Measures, per page, the latency of each request (client side, over real HTTP on 127.0.0.1,
through bench/rawhttp.py's lean client unless --client httpx):
the first page of /tickets, a ticket page with 50 articles, /tickets?q=, and a bare
Starlette page served by uvicorn in a process of its own. Prints p50, p99 and max, and the
CPU per request of the server and of this client.

Then the SMTP intake's 10k/8 workload (bench/load.py: 8 connections, 10 KB mails, the
senders registered through the CLI, confirmations relayed to bench/sink.py) against the same
daemon, alone and while a separate process asks for 50 pages a second (the three pages in
turn, paced, not waiting for answers), rounds alternating; prints mails/s of each, the ratio,
the replies other than 250, the page views' latency, and the daemon's RSS (now and peak).
Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import procs  # noqa: E402
from load import LoadResult, TicketPool, make_senders, run_load  # noqa: E402
from pgcluster import PgCluster  # noqa: E402
from rawhttp import RawClient  # noqa: E402
from stack import NO_RATE_LIMIT, ticketmail_cli  # noqa: E402

from ticketmail.storage import postgres  # noqa: E402
from ticketmail.storage.paths import DB_NAME  # noqa: E402
from ticketmail.storage.search import index_some  # noqa: E402
from ticketmail.storage.store import Store  # noqa: E402
from ticketmail.web.security import hash_password  # noqa: E402

PASSWORD = "bench-password-0123"  # noqa: S105 - the benchmark users' password
WORDS = ("Drucker", "Beamer", "WLAN", "Passwort", "Zeugnis", "Stundenplan", "Tablet", "Server",
         "Lizenz", "Update", "Export", "Import", "Klasse", "Lehrer", "Raum", "Kurs")  # fmt: skip
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

async def page(request):
    return HTMLResponse("<!doctype html><title>bare</title><p>bare Starlette page</p>")

app = Starlette(routes=[Route("/", page)])
"""


def populate(data_dir: Path, *, tickets: int, institutions: int, articles: int) -> None:
    """Customers, one user each, tickets and articles, written straight into the database."""
    asyncio.run(_schema(data_dir))
    conn = sqlite3.connect(data_dir / DB_NAME)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        _fill(conn, tickets=tickets, institutions=institutions, articles=articles)
        # Indexed at once (both indexes, as the indexer does): not left to the daemon's
        # indexer, which would otherwise work through 400,000 articles while the pages are
        # measured.
        while index_some(conn):
            pass
    conn.execute("ANALYZE")
    conn.close()


def populate_postgres(url: str, *, tickets: int, institutions: int, articles: int) -> str:
    """The same rows in a PostgreSQL database (schema by ticketmail's own migration); what
    became of the search index."""
    conn = postgres.connect(url)
    try:
        postgres.migrate(conn)
        with conn.raw.transaction():
            _fill(conn, tickets=tickets, institutions=institutions, articles=articles)
        try:
            left = 1
            while left:  # a transaction per batch: one for all would scan every dead row again
                with conn.raw.transaction():
                    left = index_some(conn)
            indexed = "indexed at once"
        except psycopg.Error as exc:  # no search index on PostgreSQL in this ticketmail yet
            indexed = f"not indexed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        # VACUUM as well: after 400,000 rows written at once, autovacuum would otherwise
        # start on them while the pages are measured (SQLite's population leaves nothing
        # to do behind it either), and the visibility map lets index-only scans skip rows.
        conn.execute("VACUUM (ANALYZE)")
        return indexed
    finally:
        conn.close()


async def _schema(data_dir: Path) -> None:
    store = await Store.open(data_dir)
    await store.close()


def _fill(conn: Any, *, tickets: int, institutions: int, articles: int) -> None:
    """The rows, through a storage connection of either backend (sqlite3's or PgConn)."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    until = (now + timedelta(days=365)).date().isoformat()
    digest = hash_password(PASSWORD)
    rnd = random.Random(42)
    conn.executemany(
        "INSERT INTO customers(number, name, support_until, created_at) VALUES (?,?,?,?)",
        [(f"{10000 + i}", f"Schule {i}", until, now.isoformat()) for i in range(institutions)],
    )
    conn.executemany(
        "INSERT INTO users(email, customer, name, lang, created_at) VALUES (?,?,?,?,?)",
        [(f"u{i}@s{i}.example", f"{10000 + i}", f"User {i}", "de", now.isoformat())
         for i in range(institutions)],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO passwords(email, hash, changed_at) VALUES (?,?,?)",
        [(f"u{i}@s{i}.example", digest, now.isoformat()) for i in range(institutions)],
    )
    rows = []
    for n in range(tickets):
        inst = n % institutions
        at = (now + timedelta(seconds=n * 30)).isoformat()
        subject = f"{rnd.choice(WORDS)} {rnd.choice(WORDS)} {n}"
        rows.append((100001 + n, f"{10000 + inst}", f"u{inst}@s{inst}.example", subject,
                     rnd.choice(("new", "open", "answered", "closed")), at, at))  # fmt: skip
    conn.executemany(
        "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
        "updated_at) VALUES (?,?,?,?,?,?,?)",
        rows,
    )
    # The 50-article ticket: the newest of institution 0.
    big = 100001 + (tickets - institutions)
    plan = [big] * 50
    plan += [100001 + rnd.randrange(tickets) for _ in range(articles - 50)]
    text = " ".join(rnd.choice(WORDS) for _ in range(120))
    conn.executemany(
        "INSERT INTO articles(ticket, direction, automatic, sender, to_json, cc_json, "
        "subject, message_id, in_reply_to, references_json, body_text, reply_text, "
        "created_at) VALUES (?, 'in', 0, ?, '[]', '[]', 'Betreff', '', '', '[]', ?, ?, ?)",
        [(t, "u0@s0.example", f"{text} {i}", f"{text} {i}", now.isoformat())
         for i, t in enumerate(plan)],
    )  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


async def login(base: str, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    page = await client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.status_code
    return client


async def raw_login(host: str, port: int, email: str) -> RawClient:
    """A lean client (bench/rawhttp.py) with the session cookie of a login through httpx."""
    client = await login(f"http://{host}:{port}", email)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    await client.aclose()
    return RawClient(host, port, cookie)


async def measure(clients: list[Any], paths: list[str], requests: int) -> list[float]:
    """Every client asks for its path `requests` times, all clients at once."""
    latencies: list[float] = []

    async def one(client: Any, path: str) -> None:  # an httpx.AsyncClient or a RawClient
        for _ in range(requests):
            start = time.perf_counter()
            response = await client.get(path)
            latencies.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (path, response.status_code)

    await asyncio.gather(*(one(c, p) for c, p in zip(clients, paths, strict=True)))
    return latencies


def summary(name: str, values: list[float]) -> dict[str, object]:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return {"page": name, "requests": len(values), "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(p99, 1), "max_ms": round(values[-1], 1)}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    args: argparse.Namespace, daemons: dict[str, tuple[int, int]], bare: tuple[int, int]
) -> list[dict[str, object]]:
    """Every page of `--pages`, on each backend's daemon in turn (`daemons`: backend ->
    (web port, pid)); the bare page once. With two backends, a ratio row after each page."""
    institutions = args.institutions
    users = [f"u{i}@s{i}.example" for i in range(args.clients)]
    bare_port, bare_pid = bare
    groups: dict[str, tuple[list[Any], list[Any]]] = {}
    bare_clients: list[Any]
    for backend, (web_port, _) in daemons.items():
        if args.client == "raw":  # one connection each; user 0's 20 for its ticket
            clients: list[Any] = [await raw_login("127.0.0.1", web_port, u) for u in users]
            owners: list[Any] = [RawClient("127.0.0.1", web_port, clients[0].cookie) for _ in users]
        else:  # httpx, as a browser-like client: user 0's one client asks 20 times at once
            clients = [await login(f"http://127.0.0.1:{web_port}", u) for u in users]
            owners = clients[:1] * len(users)
        groups[backend] = (clients, owners)
    if args.client == "raw":
        bare_clients = [RawClient("127.0.0.1", bare_port) for _ in users]
    else:
        bare_clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{bare_port}") for _ in users]
    big = 100001 + (args.tickets - institutions)
    results: list[dict[str, object]] = []
    searches = [f"/tickets?q={WORDS[i % len(WORDS)]}" for i in range(len(users))]
    pages = {
        "bare": ("bare Starlette page", None, ["/"] * len(users)),
        "list": ("/tickets (first page)", 0, ["/tickets"] * len(users)),
        "ticket": ("/tickets/N (50 articles)", 1, [f"/tickets/{big}"] * len(users)),
        "search": ("/tickets?q=", 0, searches),
    }
    for name, which, paths in (pages[p] for p in args.pages.split(",")):
        measured: dict[str, dict[str, object]] = {}
        runs = (
            [("", bare_clients, bare_pid)]
            if which is None
            else [(b, groups[b][which], daemons[b][1]) for b in daemons]
        )
        for backend, group, pid in runs:
            row: dict[str, object]
            try:
                await measure(group, paths, 3)  # warm up
                server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
                row = summary(name, await measure(group, paths, args.requests))
            except (AssertionError, httpx.HTTPError, OSError) as exc:
                row = {"page": name, "failed": f"{type(exc).__name__}: {exc}"[:300]}
            else:
                # CPU per request: of the server answering, and of this client process asking.
                count = int(row["requests"])
                row["server_cpu_ms"] = round((cpu_seconds(pid) - server_cpu) * 1000 / count, 2)
                row["client_cpu_ms"] = round((time.process_time() - client_cpu) * 1000 / count, 2)
            if backend:
                row = {"backend": backend, **row}
                measured[backend] = row
            results.append(row)
        if "sqlite" in measured and "postgres" in measured:
            results.append(ratio_row(name, measured["sqlite"], measured["postgres"]))
    every = [c for clients, owners in groups.values() for c in clients + owners] + bare_clients
    for c in {id(c): c for c in every}.values():
        await c.aclose()
    return results


def ratio_row(name: str, sqlite: dict[str, object], pg: dict[str, object]) -> dict[str, object]:
    """PostgreSQL's figures over SQLite's for one page (the issue: within 1.5)."""
    row: dict[str, object] = {"page": name, "ratio": "postgres / sqlite"}
    for key in ("p50_ms", "p99_ms", "server_cpu_ms"):
        a, b = sqlite.get(key), pg.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and a > 0:
            row[key.replace("_ms", "")] = round(b / a, 2)
    if "p50" in row:
        row["within_1_5"] = bool(float(str(row["p50"])) <= 1.5 and float(str(row["p99"])) <= 1.5)
    return row


# --- the intake with and without page views -------------------------------------------------


def page_paths(args: argparse.Namespace) -> list[tuple[int, str]]:
    """(client, path): the three pages in turn; the 50-article ticket is user 0's."""
    big = 100001 + (args.tickets - args.institutions)
    found: list[tuple[int, str]] = []
    for i in range(args.clients):
        found += [(i, "/tickets"), (0, f"/tickets/{big}"), (i, f"/tickets?q={WORDS[i % 16]}")]
    return found


def views(
    base: str, users: list[str], paths: list[tuple[int, str]], rate: float, out: Any, stop: Any
) -> None:
    """In a process of its own: log in, say so, then ask for `rate` pages a second (paced,
    not waiting for the answers) until `stop` is set; send back latencies and failures."""

    async def go() -> dict[str, object]:
        clients = [await login(base, u) for u in users]
        out.put("ready")
        latencies: list[float] = []
        failures: list[str] = []

        async def one(client: httpx.AsyncClient, path: str) -> None:
            start = time.perf_counter()
            try:
                response = await client.get(path)
                if response.status_code != 200:
                    failures.append(f"{path}: {response.status_code}")
            except httpx.HTTPError as exc:
                failures.append(f"{path}: {exc!r}")
            latencies.append((time.perf_counter() - start) * 1000)

        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            due = start + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            who, path = paths[sent % len(paths)]
            task = asyncio.create_task(one(clients[who], path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        seconds = time.monotonic() - start
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for c in clients:
            await c.aclose()
        return {"views": len(latencies), "per_second": round(len(latencies) / seconds, 1),
                **summary("page views", latencies), "failures": failures[:5]}  # fmt: skip

    out.put(asyncio.run(go()))


def register(config: Path) -> None:
    """The intake's senders: users of five institutions, through the CLI as in bench/run.py."""
    users = config.parent / "senders.csv"
    users.write_text(
        "email,customer,name,lang\n"
        + "".join(f"{s.address},{s.customer},{s.name},de\n" for s in make_senders(8, customers=5)),
        encoding="utf-8",
    )
    ticketmail_cli(config, "user", "import", str(users))


def intake(
    args: argparse.Namespace, base: str, smtp_port: int, daemon: int, relay: int
) -> dict[str, object]:
    senders = make_senders(8, customers=5)
    pool = TicketPool()
    users = [f"u{i}@s{i}.example" for i in range(args.clients)]
    alone: list[LoadResult] = []
    beside: list[LoadResult] = []
    seen_views: list[object] = []
    run_id = f"web-{os.getpid()}-{time.time_ns()}"
    asyncio.run(run_load(smtp_port, size="10k", mails=40, senders=senders, pool=pool,
                         tag=f"{run_id}-warm"))  # fmt: skip
    mp = multiprocessing.get_context("fork")
    for round_ in range(args.intake_rounds):
        for with_views in (False, True):
            procs.wait_idle([daemon, relay], seconds=60)
            if args.wait_quiet > 0:
                procs.wait_quiet(seconds=args.wait_quiet)
            out, stop = mp.Queue(), mp.Event()
            child = None
            if with_views:
                child = mp.Process(
                    target=views,
                    args=(base, users, page_paths(args), args.views_per_second, out, stop),
                )
                child.start()
                if out.get(timeout=60) != "ready":
                    raise SystemExit("the page views did not start")
                time.sleep(1.0)  # the views run steadily before the mail starts
            result = asyncio.run(
                run_load(smtp_port, size="10k", mails=args.intake_mails, senders=senders,
                         pool=pool, tag=f"{run_id}-{round_}-{with_views}")
            )  # fmt: skip
            (beside if with_views else alone).append(result)
            if child is not None:
                stop.set()
                seen_views.append(out.get(timeout=60))
                child.join(timeout=30)
            what = "with" if with_views else "without"
            print(f"# intake round {round_ + 1} {what} page views: {result.rate:.1f} mails/s "
                  f"{dict(result.codes)}", file=sys.stderr)  # fmt: skip

    def rate(results: list[LoadResult]) -> float:
        return sum(r.answered for r in results) / sum(r.seconds for r in results)

    codes: dict[int, int] = {}
    for r in alone + beside:
        for code, n in r.codes.items():
            codes[code] = codes.get(code, 0) + n
    return {
        "intake": "10k/8",
        "mails_per_second_alone": round(rate(alone), 1),
        "mails_per_second_with_views": round(rate(beside), 1),
        "ratio": round(rate(beside) / rate(alone), 3),
        "rounds": [
            [round(a.rate, 1), round(b.rate, 1)] for a, b in zip(alone, beside, strict=True)
        ],
        "replies": {str(k): v for k, v in sorted(codes.items())},
        "errors": sum(sum(r.errors.values()) for r in alone + beside),
        "page_views": seen_views,
    }


def write_config(
    directory: Path, data_dir: Path, *, relay_port: int, url: str = ""
) -> tuple[Path, int, int]:
    """One daemon's config (on PostgreSQL with the .env beside it); (config, web, smtp port)."""
    directory.mkdir(parents=True, exist_ok=True)
    web_port, smtp_port = free_port(), free_port()
    backend = '\nbackend = "postgres"' if url else ""
    config = directory / "config.toml"
    config.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        f'hostname = "ticketmail.bench.example"\n[storage]\ndata_dir = "{data_dir}"{backend}\n'
        f'[relay]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {relay_port}\n'
        f"[policy]\nmax_auto_replies_per_hour = {NO_RATE_LIMIT}\n"
        f"max_auto_replies_per_ticket_per_hour = {NO_RATE_LIMIT}\n"
        f'[web]\nport = {web_port}\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    if url:
        (directory / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
    return config, web_port, smtp_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=400_000)
    parser.add_argument("--institutions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40, help="per client and page")
    parser.add_argument("--pages", default="bare,list,ticket,search", help="which, in order")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: bench/rawhttp.py, a lean keep-alive client (default); httpx costs this "
        "process more CPU a request than the pages cost the server (see bench/README.md)",
    )
    parser.add_argument("--profile", metavar="FILE", help="sample the daemon with py-spy (raw)")
    parser.add_argument("--intake-mails", type=int, default=1500, help="per run, 0: no intake")
    parser.add_argument("--intake-rounds", type=int, default=2)
    parser.add_argument("--views-per-second", type=float, default=50.0)
    quiet = "wait (at most this long) for a quiet machine before a part"
    parser.add_argument("--wait-quiet", type=float, default=30.0, help=quiet)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: the same pages also from a daemon on PostgreSQL, SQLite's beside them",
    )
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgres"] if args.backend == "postgres" else [])
    cluster = PgCluster().start() if args.backend == "postgres" else None
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    bare = None
    relay = None
    try:
        with tempfile.TemporaryDirectory(prefix="tm-bench-web-") as tmp:
            sizes = {"tickets": args.tickets, "institutions": args.institutions,
                     "articles": args.articles}  # fmt: skip
            relay_port, bare_port = free_port(), free_port()
            ports: dict[str, tuple[Path, int, int]] = {}
            for backend in backends:
                started = time.monotonic()
                data_dir = Path(tmp) / backend / "var"
                url = ""
                if backend == "sqlite":
                    populate(data_dir, **sizes)
                    done = "indexed at once"
                else:
                    assert cluster is not None
                    cluster.psql('CREATE DATABASE "bench_web"')
                    url = cluster.url("bench_web")
                    done = populate_postgres(url, **sizes)
                seconds = time.monotonic() - started
                print(f"# {backend}: populated in {seconds:.1f} s, {done}", file=sys.stderr)
                ports[backend] = write_config(
                    Path(tmp) / backend, data_dir, relay_port=relay_port, url=url
                )
                register(ports[backend][0])
            (Path(tmp) / "bare.py").write_text(BARE_APP, encoding="utf-8")
            env = {**os.environ, "PYTHONPATH": tmp}
            relay = procs.start(
                "relay sink", [sys.executable, str(REPO / "bench" / "sink.py"), "--port",
                               str(relay_port)], port=relay_port, log_path=Path(tmp) / "relay.log",
                env=dict(os.environ), cwd=Path(tmp),
            )  # fmt: skip
            clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
            for backend, (config, _, _) in ports.items():
                with (config.parent / "daemon.log").open("wb") as log:
                    daemons[backend] = subprocess.Popen(
                        [sys.executable, "-m", "ticketmail", "--config", str(config), "serve"],
                        stdout=subprocess.DEVNULL, stderr=log, cwd=config.parent, env=clean,
                    )  # fmt: skip
            bare = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(bare_port),
                 "--log-level", "warning", "--no-access-log"], env=env,
            )  # fmt: skip
            try:
                results, rss = measure_all(args, ports, daemons, relay, (bare_port, bare.pid))
            finally:
                for backend, (config, _, _) in ports.items():
                    print_troubles(backend, config.parent / "daemon.log")
    finally:
        for proc in [*daemons.values(), *([bare] if bare is not None else [])]:
            proc.terminate()
        for proc in [*daemons.values(), *([bare] if bare is not None else [])]:
            proc.wait(timeout=30)
        if relay is not None:
            relay.stop()
        if cluster is not None:
            cluster.stop()
    results.extend(rss)
    for row in results:
        print(json.dumps(row))


def print_troubles(backend: str, path: Path) -> None:
    """The daemon's warnings and errors (its log, level warning), counted by event and error."""
    found: Counter[str] = Counter()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"event": line}
        if not isinstance(entry, dict):
            continue
        error = str(entry.get("error") or entry.get("reason") or "").splitlines()[:1]
        found[" ".join([str(entry.get("event", "?")).strip()[:100], *error])] += 1
    for what, count in found.most_common(8):
        print(f"# {backend} daemon logged {count} x {what}", file=sys.stderr)


def measure_all(
    args: argparse.Namespace,
    ports: dict[str, tuple[Path, int, int]],
    daemons: dict[str, subprocess.Popen[bytes]],
    relay: procs.Server,
    bare: tuple[int, int],
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The pages on every backend, then the intake with and without page views on each."""
    relay.wait_port(seconds=30)
    for _, web_port, _ in ports.values():
        wait_for(web_port)
    wait_for(bare[0])
    if args.wait_quiet > 0:
        procs.wait_quiet(seconds=args.wait_quiet)
    spy = None
    if args.profile:  # py-spy (pip install py-spy) samples the daemon while measured
        spy_args = ["py-spy", "record", "--format", "raw", "--threads", "-o", args.profile]
        spy = subprocess.Popen([*spy_args, "--pid", str(daemons["sqlite"].pid)])
    servers = {b: (web_port, daemons[b].pid) for b, (_, web_port, _) in ports.items()}
    results = asyncio.run(run(args, servers, bare))
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    rss: list[dict[str, object]] = []
    for backend, (_, web_port, smtp_port) in ports.items():
        pid = daemons[backend].pid
        if args.intake_mails > 0:
            base = f"http://127.0.0.1:{web_port}"
            row = intake(args, base, smtp_port, pid, relay.pid)
            results.append({"backend": backend, **row})
        rss.append({"backend": backend, "daemon": "ticketmail serve, its worker processes included",
                    "rss_mib": round(procs.rss_kib(pid) / 1024, 1),
                    "peak_rss_mib": round(procs.peak_rss_kib(pid) / 1024, 1),
                    "processes": len(procs.family(pid))})  # fmt: skip
    return results, rss


if __name__ == "__main__":
    main()
