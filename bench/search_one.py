"""A search within one institution, in-process: the portal's (`search_tickets`) and the
desk's with and without an institution (`queue`), over bench/web.py's data (20,000 tickets,
80,000 articles of the same German-like text, 100 institutions), best of 7, wall and CPU.

    .venv/bin/python bench/search_one.py [--data DIR]

With --data, the database is built there once and used again by later runs (so the same
data can be timed under two versions of the code: run this file of each version with its own
DIR). Not part of the tests.
"""

from __future__ import annotations

import argparse
import functools
import math
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import web  # noqa: E402

from ticketmail.storage import desk, portal_list  # noqa: E402
from ticketmail.storage.paths import DB_NAME  # noqa: E402

CUSTOMER = "10042"
QUERIES = ("Drucker", "Kurs", "WLAN Drucker", "nisvorl", "PC")


def _best(fn: Callable[[], Any], n: int = 7) -> tuple[float, float, Any]:
    wall = cpu = math.inf
    result = None
    for _ in range(n):
        start, used = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - used)
    return wall * 1000, cpu * 1000, result


def run(data: Path) -> None:
    if not (data / DB_NAME).exists():
        data.mkdir(parents=True, exist_ok=True)
        web.populate(data, tickets=20000, institutions=100, articles=80000)
    conn = sqlite3.connect(f"file:{data / DB_NAME}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    searches: dict[str, Callable[[str], Any]] = {
        "portal": lambda q: portal_list.search_tickets(
            conn, CUSTOMER, q=q, status=None, requester=None, limit=25, offset=0,
            deadline=time.monotonic() + 10,
        ),
        "desk, one institution": lambda q: desk.queue(
            conn, status=None, customer=CUSTOMER, owner=None, q=q, limit=25, offset=0,
            deadline=time.monotonic() + 10,
        ),
        "desk, all": lambda q: desk.queue(
            conn, status=None, customer=None, owner=None, q=q, limit=25, offset=0,
            deadline=time.monotonic() + 10,
        ),
    }  # fmt: skip
    for q in QUERIES:
        for name, search in searches.items():
            wall, cpu, found = _best(functools.partial(search, q))
            print(f"{name:22} {q!r:16} {wall:7.1f} ms  cpu {cpu:7.1f} ms  found {found.total}")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="where the database is built once and kept")
    args = parser.parse_args()
    if args.data is not None:
        run(args.data)
        return
    with tempfile.TemporaryDirectory(prefix="tm-bench-search-") as tmp:
        run(Path(tmp) / "var")


if __name__ == "__main__":
    main()
