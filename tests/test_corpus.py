"""Every real mail of ../shared/corpus and of CPython's test_email data through the real daemon."""

from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import CORPUS, Env, read_rows, stored_blob

from ticketmail.mail.parse import parse_mail

MAX_SECONDS_PER_MAIL = 2.0
# CPython's own test mails (msg_*.txt of Lib/test/test_email/data), vendored beside this file
# with their README and licence: many Pythons are installed without their test package.
CPYTHON_EMAIL_DATA = Path(__file__).resolve().parent / "fixtures" / "cpython-test_email"
CPYTHON_ROW = "cpython-test_email"


def corpus_messages() -> list[tuple[str, str, Path]]:
    """(table row, name, path) of every `message` in the shared corpus's MANIFEST."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        pytest.skip(f"corpus not found at {CORPUS} (it sits beside the repository in CI)")
    with manifest.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "message"]
    return [
        (Path(r["local_path"]).parts[0], r["local_path"], CORPUS / r["local_path"]) for r in rows
    ]


def cpython_messages() -> list[tuple[str, str, Path]]:
    """(table row, name, path) of every message file of CPython's test_email data."""
    paths = sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))
    assert paths, f"CPython's test_email mails missing from {CPYTHON_EMAIL_DATA}"
    return [(CPYTHON_ROW, f"{CPYTHON_ROW}/{p.name}", p) for p in paths]


SOURCES = {"shared-corpus": corpus_messages, CPYTHON_ROW: cpython_messages}


def smtp_bytes(raw: bytes) -> bytes:
    """The bytes as they arrive over SMTP: every line ending CRLF."""
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data = b"\r\n".join(lines)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(SOURCES))
async def test_every_corpus_mail_is_kept_or_deliberately_decided(
    source: str, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """No 4xx/5xx from parsing, no traceback, < 2 s each; stored byte for byte or decided."""
    messages = SOURCES[source]()
    paths = [path for _, _, path in messages]
    senders = {parse_mail(p.read_bytes()).from_addr for p in paths}
    for sender in sorted(s for s in senders if s and "@" in s):
        await env.user(sender, "10042")

    table: dict[str, Counter[str]] = defaultdict(Counter)
    problems: list[str] = []
    slowest = (0.0, "")
    seen: set[tuple[str, str]] = set()
    for folder, name, path in messages:
        raw = path.read_bytes()
        parsed = parse_mail(smtp_bytes(raw))
        sender = parsed.from_addr
        started = time.monotonic()
        code, text = await env.send(raw, mail_from="corpus-sender@example.org")
        elapsed = time.monotonic() - started
        slowest = max(slowest, (elapsed, name))
        if elapsed > MAX_SECONDS_PER_MAIL:
            problems.append(f"{name}: took {elapsed:.2f}s")
        if code == 250 and "held for review" in text:
            outcome = "quarantined"
            problems.append(f"{name}: processing failed, quarantined")
        elif code == 250:
            outcome = "ticket" if "ticket" in text else "decided"
            key = (parsed.message_id, sender)
            found = read_rows(
                env.data_dir,
                "SELECT raw_sha256 FROM messages WHERE message_id = ? AND header_from = ?",
                key,
            )
            stored = found[0] if found else None
            expected = hashlib.sha256(smtp_bytes(raw)).hexdigest()
            if key in seen:
                outcome = "duplicate"
            elif stored is None or stored[0] != expected:
                problems.append(f"{name}: raw bytes not kept as sent ({stored})")
            seen.add(key)
        elif code == 550 and text.startswith("5.7.1") and ("@" not in sender):
            outcome = "refused:no-from"
        else:
            outcome = f"error:{code}"
            problems.append(f"{name}: {code} {text}")
        table[folder][outcome] += 1

    # Every kept raw blob holds exactly the bytes its name promises.
    rows = read_rows(env.data_dir, "SELECT raw_sha256, outcome, reason FROM messages")
    for sha, _, _ in rows:
        blob = stored_blob(env.data_dir, sha) or b""
        if hashlib.sha256(blob).hexdigest() != sha:
            problems.append(f"blob {sha} does not hold its bytes")
    decided = Counter(f"{outcome}:{reason}" for _, outcome, reason in rows)

    output = capsys.readouterr()
    with capsys.disabled():
        print(f"\n{source}: {len(paths)} mails; slowest {slowest[0]:.2f}s ({slowest[1]})")
        print(f"{'folder':<24} " + " ".join(f"{k:>16}" for k in _columns(table)))
        for folder in sorted(table):
            row = " ".join(f"{table[folder][k]:>16}" for k in _columns(table))
            print(f"{folder:<24} {row}")
        print("stored outcomes:", dict(sorted(decided.items())))
    assert "Traceback" not in output.out + output.err
    assert not problems, "\n".join(problems)


def _columns(table: dict[str, Counter[str]]) -> list[str]:
    keys: set[str] = set()
    for counter in table.values():
        keys.update(counter)
    return sorted(keys)


def test_sent_bytes_normalisation_is_crlf_only() -> None:
    """The helper that mimics SMTP transfer only changes line endings."""
    assert smtp_bytes(b"a\nb\r\nc") == b"a\r\nb\r\nc\r\n"


def test_cpython_part_sends_only_mail_messages() -> None:
    """From the vendored CPython test_email data all 48 msg_*.txt mails are sent, nothing else."""
    messages = cpython_messages()
    sent = {path.name for _, _, path in messages}
    in_folder = {path.name for path in CPYTHON_EMAIL_DATA.iterdir()}
    # msg_01 ... msg_47 and msg_12a, as CPython 3.11.7 ships them.
    assert sent == {f"msg_{i:02d}.txt" for i in range(1, 48)} | {"msg_12a.txt"}
    assert in_folder - sent == {"README.md", "LICENSE"}
    assert {row for row, _, _ in messages} == {CPYTHON_ROW}
