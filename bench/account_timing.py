"""How long /password/forgot and /register take for an address with an account and one
without (SPEC 8.2: the same time either way). Starts a daemon in a temp dir (relay to files),
sends N requests of each kind interleaved, each for an address of its own (so that no limit
cuts the work short), and prints the median and quartiles in milliseconds.

    .venv/bin/python bench/account_timing.py [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.storage.store import CustomerRow, UserRow

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
CONFIG = """
[smtp]
host = "127.0.0.1"
port = 0
hostname = "ticketmail.bench"
workers = 0
[storage]
data_dir = "{data}"
[relay]
transport = "file"
[log]
level = "warning"
format = "json"
[web]
host = "127.0.0.1"
port = 0
ip_mail_requests = 100000
"""


async def _timed_post(http: httpx.AsyncClient, path: str, form: dict[str, str]) -> float:
    page = await http.get(path)
    found = _CSRF.search(page.text)
    assert found, page.text
    started = time.perf_counter()
    response = await http.post(path, data={**form, "csrf_token": found.group(1)})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed * 1000


def _summary(name: str, values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"{name:<34} median {median:7.1f} ms  (quartiles {q1:.1f} to {q3:.1f}, n={len(values)})"


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_text(CONFIG.format(data=Path(directory) / "var"), encoding="utf-8")
        daemon = Daemon(load_config(path, environ={}))
        await daemon.start()
        try:
            store = daemon.store
            assert store is not None
            now = datetime.now(UTC)
            until = (now + timedelta(days=365)).date()
            await store.add_customers([CustomerRow("10042", "Schule", until, None)], now=now)
            known = [f"known{i}@schule.example" for i in range(requests + 1)]
            await store.add_users([UserRow(a, "10042", "Lehrer", "de") for a in known], now=now)
            results: dict[str, list[float]] = {}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=30
            ) as http:
                await _timed_post(http, "/password/forgot", {"email": known[-1]})  # warm up
                for i in range(requests):
                    for name, address in (
                        ("forgot, address with an account", known[i]),
                        ("forgot, address without one", f"x{i}@elsewhere.example"),
                    ):
                        ms = await _timed_post(http, "/password/forgot", {"email": address})
                        results.setdefault(name, []).append(ms)
                    for name, address, customer in (
                        ("register, address with an account", known[i], "10042"),
                        ("register, new address", f"new{i}@elsewhere.example", "10042"),
                        ("register, unknown customer", f"u{i}@elsewhere.example", "99999"),
                    ):
                        form = {"email": address, "name": "N", "customer_number": customer,
                                "password": "korrekt-pferd-batterie", "language": "de"}  # fmt: skip
                        ms = await _timed_post(http, "/register", form)
                        results.setdefault(name, []).append(ms)
            for name, values in results.items():
                print(_summary(name, values))
        finally:
            await daemon.stop(grace=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    asyncio.run(main(parser.parse_args().requests))
