"""The trigram index (SCHEMA 6): its size, how fast it is filled, and what searches cost.

    .venv/bin/python bench/grams.py sizes [--articles 20000]   # the index layouts compared
    .venv/bin/python bench/grams.py queries [--articles 20000]  # the real search functions

`sizes` stores the same German-like articles (a Zipf mix of function words, stems and
compounds; median 2 KB, mean 3 KB) under four layouts and indexes them in batches of 200
as the indexer does: U, the unicode61 index alone (schema 5); A1, plus a contentless
trigram index over folded text (schema 6, the stdlib's SQLite); A2, the same trigram index
storing its text; B, plus a trigram index with `remove_diacritics 1` on the articles
themselves, which needs SQLite 3.45 (run it with a Python whose `pysqlite3` module is a
newer SQLite: `pip install pysqlite3-binary` in a scratch venv, then `--layout B`).
`queries` builds a database of the real schema (10 institutions), indexes it with
`storage.search.index_some`, and times the portal's and the desk's searches.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FUNC = [
    "der",
    "die",
    "das",
    "und",
    "ist",
    "nicht",
    "ein",
    "eine",
    "im",
    "in",
    "zu",
    "mit",
    "den",
    "dem",
    "auf",
    "für",
    "von",
    "sich",
    "es",
    "wir",
    "sie",
    "ich",
    "bitte",
    "auch",
    "noch",
    "nach",
    "bei",
    "seit",
    "aber",
    "oder",
    "wenn",
    "dann",
    "schon",
    "mehr",
    "kein",
    "keine",
    "wird",
    "wurde",
    "haben",
    "hat",
    "sind",
    "war",
    "können",
    "kann",
    "müssen",
    "muss",
    "gibt",
    "über",
    "unter",
    "vom",
    "zum",
    "zur",
]
STEMS = [
    "Zeugnis",
    "Vorlage",
    "Drucker",
    "Beamer",
    "Tafel",
    "Schüler",
    "Lehrer",
    "Klasse",
    "Raum",
    "Rechner",
    "Netz",
    "Werk",
    "Passwort",
    "Konto",
    "Schule",
    "Stunde",
    "Plan",
    "Server",
    "Tablet",
    "Laptop",
    "Kabel",
    "Strom",
    "Fehler",
    "Meldung",
    "Update",
    "Modul",
    "Fenster",
    "Liste",
    "Noten",
    "Eltern",
    "Brief",
    "Termin",
    "Ordner",
    "Datei",
    "Drucke",
    "Toner",
    "Schlüssel",
    "Zugang",
    "Anmeldung",
    "Benutzer",
    "Gruppe",
    "Rechte",
    "Lizenz",
    "Software",
    "Programm",
    "Konferenz",
    "Sekretariat",
    "Verwaltung",
    "Kopierer",
    "Scanner",
    "Bild",
    "Schirm",
    "Maus",
    "Tastatur",
    "Lautsprecher",
    "Ton",
    "Mikrofon",
    "Kamera",
    "Video",
    "Unterricht",
    "Fach",
    "Mathe",
    "Deutsch",
    "Englisch",
    "Sport",
    "Kunst",
    "Musik",
    "Übersicht",
    "Ausgabe",
    "Eingabe",
    "Speicher",
    "Sicherung",
    "Wiederherstellung",
    "Prüfung",
    "Arbeit",
    "Test",
    "Heft",
    "Buch",
    "Bücherei",
    "Mensa",
    "Hof",
    "Gebäude",
    "Flur",
    "Zimmer",
    "Haus",
    "Meister",
    "Hausmeister",
    "Telefon",
    "Handy",
    "Nachricht",
    "Post",
    "Mail",
    "Adresse",
    "Name",
    "Nummer",
    "Jahr",
    "Woche",
    "Monat",
    "Tag",
    "Ferien",
    "Zeit",
    "Grund",
    "Ganz",
    "Haupt",
    "Real",
    "Gesamt",
    "Förder",
    "Berufs",
    "Ober",
    "Mittel",
    "Unter",
    "Stufe",
    "Kurs",
    "Wahl",
    "Zwischen",
    "Stand",
    "Bericht",
    "Protokoll",
    "Vertretung",
    "Aufsicht",
    "Pause",
    "Wechsel",
    "Gerät",
    "Ladung",
    "Akku",
    "Netzteil",
    "Steckdose",
    "Verbindung",
    "Störung",
    "Ausfall",
    "Wartung",
    "Auftrag",
    "Angebot",
    "Rechnung",
    "Vertrag",
    "Support",
    "Hilfe",
    "Frage",
    "Antwort",
    "Lösung",
    "Problem",
    "Fall",
    "Ticket",
    "Sperre",
]
INSTITUTIONS = 10


def vocabulary(rnd: random.Random, n: int = 6000) -> list[str]:
    words = [s.lower() if rnd.random() < 0.3 else s for s in STEMS]
    while len(words) < n:
        word = rnd.choice(STEMS) + rnd.choice(STEMS).lower()
        words.append(word + rnd.choice(("n", "s", "en", "e")) if rnd.random() < 0.1 else word)
    return words


def text(rnd: random.Random, vocab: list[str], size: int) -> str:
    out: list[str] = []
    total = 0
    while total < size:
        r = rnd.random()
        if r < 0.45:
            w = FUNC[min(int(rnd.expovariate(0.1)), len(FUNC) - 1)]
        elif r < 0.47:
            w = str(rnd.randrange(1, 2000))
        elif rnd.random() < 0.5:
            w = vocab[int(rnd.paretovariate(0.8)) % len(vocab)]
        else:
            w = rnd.choice(vocab)
        out.append(w + rnd.choice((".", ",", "?", "!")) if rnd.random() < 0.08 else w)
        total += len(out[-1]) + 1
    return " ".join(out)


def articles(n: int) -> list[tuple[int, int, str, str, str]]:
    """(id, ticket, subject, sender, body): three articles a ticket."""
    rnd = random.Random(5)
    vocab = vocabulary(rnd)
    rows = []
    for i in range(n):
        body = text(rnd, vocab, int(min(40000, rnd.lognormvariate(7.6, 0.8))))
        if i == n - 7:
            body += " Bitte die Zeugnisvorlage prüfen."
        subject = " ".join(rnd.choice(vocab) for _ in range(4))
        rows.append((i + 1, i // 3 + 1, subject, f"user{i % 50}@schule{i % 10}.example", body))
    return rows


def sizes(layout: str, n: int) -> dict[str, Any]:
    if layout == "B":
        import pysqlite3 as sqlite3  # type: ignore[import-not-found]
    else:
        import sqlite3
    if layout in ("A1", "A2"):
        from ticketmail.storage.fulltext import gram_columns

    path = _scratch() / "grams.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE articles(id INTEGER PRIMARY KEY, ticket INT, subject TEXT, "
        "sender TEXT, to_json TEXT, body_text TEXT)"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE article_search USING fts5(subject, sender, to_json, "
        "body_text, content='articles', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    grams = {
        "A1": "fts5(subject, people, body, content='', tokenize='trigram')",
        "A2": "fts5(subject, people, body, tokenize='trigram')",
        "B": "fts5(subject, body_text, content='articles', content_rowid='id', "
        "tokenize='trigram remove_diacritics 1')",
    }
    if layout in grams:
        conn.execute(f"CREATE VIRTUAL TABLE article_grams USING {grams[layout]}")
    rows = articles(n)
    chars = sum(len(r[2]) + len(r[4]) for r in rows)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO articles VALUES (?, ?, ?, ?, '[]', ?)", rows)
    conn.execute("COMMIT")
    spent = {"unicode61": 0.0, "trigram": 0.0}
    for k in range(0, n, 200):
        batch = rows[k : k + 200]
        conn.execute("BEGIN")
        start = time.perf_counter()
        conn.executemany(
            "INSERT INTO article_search(rowid, subject, sender, to_json, body_text) "
            "VALUES (?, ?, ?, '[]', ?)",
            [(r[0], r[2], r[3], r[4]) for r in batch],
        )
        middle = time.perf_counter()
        if layout in ("A1", "A2"):
            conn.executemany(
                "INSERT INTO article_grams(rowid, subject, people, body) VALUES (?, ?, ?, ?)",
                # schema 6's three columns (schema 11 adds the institution's token)
                [(r[0], *gram_columns(r[2], r[3], "[]", r[4], "")[:3]) for r in batch],
            )
        elif layout == "B":
            conn.executemany(
                "INSERT INTO article_grams(rowid, subject, body_text) VALUES (?,?,?)",
                [(r[0], r[2], r[4]) for r in batch],
            )
        conn.execute("COMMIT")
        spent["unicode61"] += middle - start
        spent["trigram"] += time.perf_counter() - middle
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    size = os.path.getsize(path)
    conn.close()
    return {
        "layout": layout,
        "sqlite": sqlite3.sqlite_version,
        "articles": n,
        "text_MB": round(chars / 1e6, 1),
        "db_MB": round(size / 1e6, 1),
        "unicode61_s": round(spent["unicode61"], 2),
        "trigram_s": round(spent["trigram"], 2),
        "trigram_MB_per_s": round(chars / 1e6 / spent["trigram"], 1) if layout != "U" else None,
    }


def queries(n: int) -> None:
    import math
    import sqlite3

    from ticketmail.storage import desk, portal_list
    from ticketmail.storage._schema import migrate
    from ticketmail.storage.search import index_some

    path = _scratch() / "grams.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrate(conn)
    now = "2026-11-01T00:00:00+00:00"
    rows = articles(n)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO customers(number, name, created_at) VALUES (?, ?, ?)",
        [(str(10000 + i), f"Schule {i}", now) for i in range(INSTITUTIONS)],
    )
    conn.executemany(
        "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
        [
            (t, str(10000 + t % INSTITUTIONS), f"u{t}@x.example", "Frage", now, now)
            for t in range(1, n // 3 + 2)
        ],
    )
    conn.executemany(
        "INSERT INTO articles(id, ticket, direction, automatic, sender, to_json, cc_json, "
        "subject, message_id, in_reply_to, references_json, body_text, reply_text, "
        "created_at) VALUES (?, ?, 'in', 0, ?, '[]', '[]', ?, '', '', '[]', ?, '', ?)",
        [(r[0], r[1], r[3], r[2], r[4], now) for r in rows],
    )
    conn.execute("COMMIT")
    start = time.perf_counter()
    conn.execute("BEGIN")
    while index_some(conn):
        pass
    conn.execute("COMMIT")
    chars = sum(len(r[2]) + len(r[4]) for r in rows)
    took = time.perf_counter() - start
    print(
        f"indexed {n} articles ({chars / 1e6:.1f} MB) with index_some: {took:.1f} s, "
        f"{chars / 1e6 / took:.1f} MB/s"
    )
    target = str(10000 + (rows[-7][1] % INSTITUTIONS))  # the institution of 'Zeugnisvorlage'
    adversarial = "-".join(["die", "das", "der", "und"] * 13)[:200]
    for q in (
        "Zeugnisvorlage",
        "nisvorl",
        "Drucker",
        "Schuler",
        "PC",
        "12",
        "die",
        "Drucker Toner",
        adversarial,
    ):
        for name, run in (
            (
                "portal",
                lambda d, q=q: portal_list.search_tickets(
                    conn, target, q=q, status=None, requester=None, limit=25, offset=0, deadline=d
                ),
            ),
            (
                "desk",
                lambda d, q=q: desk.queue(
                    conn,
                    status=None,
                    customer=None,
                    owner=None,
                    q=q,
                    limit=50,
                    offset=0,
                    deadline=d,
                ),
            ),
        ):
            for budget in (0.5, math.inf):
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    found = run(time.monotonic() + budget)
                    times.append(time.perf_counter() - start)
                print(
                    f"{name:6} q={q[:24]!r:27} budget {budget:>4} s: {min(times) * 1000:8.1f} "
                    f"ms, {found.total:6} found, cut {found.cut}"
                )


def _scratch() -> Path:
    """A temporary directory for one database, removed when the run ends."""
    folder = tempfile.TemporaryDirectory(prefix="ticketmail-grams-")
    _SCRATCH.append(folder)
    return Path(folder.name)


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("sizes", "queries"))
    parser.add_argument("--articles", type=int, default=20000)
    parser.add_argument("--layout", action="append", choices=("U", "A1", "A2", "B"))
    args = parser.parse_args()
    if args.what == "sizes":
        for layout in args.layout or ("U", "A1", "A2"):
            print(json.dumps(sizes(layout, args.articles)))
    else:
        queries(args.articles)


if __name__ == "__main__":
    main()
