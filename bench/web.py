"""The portal under load: 20 logged-in clients against a database of 100,000 tickets and
400,000 articles across 500 institutions, beside a bare Starlette page in the same run.

    .venv/bin/python bench/web.py [--tickets 100000] [--clients 20] [--requests 40]

Measures, per page, the latency of each request (client side, over real HTTP on 127.0.0.1):
the first page of /tickets, a ticket page with 50 articles, /tickets?q=, and a bare
Starlette page served by uvicorn in a process of its own. Prints p50, p99 and max.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ticketmail.storage.store import DB_NAME, Store  # noqa: E402
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
    now = datetime(2026, 11, 1, tzinfo=UTC)
    until = (now + timedelta(days=365)).date().isoformat()
    digest = hash_password(PASSWORD)
    rnd = random.Random(42)
    with conn:
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
    conn.execute("ANALYZE")
    conn.close()


async def _schema(data_dir: Path) -> None:
    store = await Store.open(data_dir)
    await store.close()


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


async def measure(clients: list[httpx.AsyncClient], paths: list[str], requests: int) -> list[float]:
    """Every client asks for its path `requests` times, all clients at once."""
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, path: str) -> None:
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
    args: argparse.Namespace, web_port: int, bare_port: int, servers: dict[str, int]
) -> list[dict[str, object]]:
    base = f"http://127.0.0.1:{web_port}"
    institutions = args.institutions
    users = [f"u{i}@s{i}.example" for i in range(args.clients)]
    clients = [await login(base, u) for u in users]
    bare = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{bare_port}") for _ in users]
    big = 100001 + (args.tickets - institutions)
    results = []
    pages = {
        "bare": ("bare Starlette page", bare, ["/"] * len(users)),
        "list": ("/tickets (first page)", clients, ["/tickets"] * len(users)),
        "ticket": (
            "/tickets/N (50 articles)",
            clients[:1] * len(users),
            [f"/tickets/{big}"] * len(users),
        ),
        "search": (
            "/tickets?q=",
            clients,
            [f"/tickets?q={WORDS[i % len(WORDS)]}" for i in range(len(users))],
        ),
    }
    for name, group, paths in (pages[p] for p in args.pages.split(",")):
        await measure(group, paths, 3)  # warm up
        pid = servers["bare" if group is bare else "daemon"]
        server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        row = summary(name, await measure(group, paths, args.requests))
        # CPU per request: of the server answering, and of this client process asking.
        count = int(row["requests"])
        row["server_cpu_ms"] = round((cpu_seconds(pid) - server_cpu) * 1000 / count, 2)
        row["client_cpu_ms"] = round((time.process_time() - client_cpu) * 1000 / count, 2)
        results.append(row)
    for c in clients + bare:
        await c.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=400_000)
    parser.add_argument("--institutions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40, help="per client and page")
    parser.add_argument("--pages", default="bare,list,ticket,search", help="which, in order")
    parser.add_argument("--profile", metavar="FILE", help="sample the daemon with py-spy (raw)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tm-bench-web-") as tmp:
        data_dir = Path(tmp) / "var"
        started = time.monotonic()
        populate(data_dir, tickets=args.tickets, institutions=args.institutions,
                 articles=args.articles)  # fmt: skip
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
            spy = None
            if args.profile:  # py-spy (pip install py-spy) samples the daemon while measured
                spy_args = ["py-spy", "record", "--format", "raw", "--threads", "-o", args.profile]
                spy = subprocess.Popen([*spy_args, "--pid", str(daemon.pid)])
            servers = {"daemon": daemon.pid, "bare": bare.pid}
            results = asyncio.run(run(args, web_port, bare_port, servers))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
        finally:
            daemon.terminate()
            bare.terminate()
            daemon.wait(timeout=30)
            bare.wait(timeout=30)
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
