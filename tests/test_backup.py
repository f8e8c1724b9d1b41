"""`ticketmail backup DEST`: a consistent copy while the daemon runs, usable as a data dir."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Env, make_mail, run_cli, write_config

from ticketmail.storage.paths import DB_NAME


def _mail_with_file(subject: str, payload: bytes) -> EmailMessage:
    msg = make_mail("anna@schule.example", subject)
    msg.add_attachment(payload, maintype="application", subtype="pdf", filename=f"{subject}.pdf")
    return msg


@pytest.mark.sqlite_only  # SQLite's backup into a directory; pg_dump's: test_pg_storage
async def test_backup_while_running_restores_every_ticket(env: Env, tmp_path: Path) -> None:
    """A backup taken during intake holds every ticket accepted before it, with all its files."""
    for i in range(5):
        code, _ = await env.send(_mail_with_file(f"Vorher {i}", f"PDF {i}".encode() * 100))
        assert code == 250
    dest = tmp_path / "backup"

    async def keep_sending() -> int:
        accepted = 0
        for i in range(10):
            code, _ = await env.send(_mail_with_file(f"Waehrenddessen {i}", bytes([i]) * 5000))
            accepted += code == 250
        return accepted

    sender = asyncio.create_task(keep_sending())
    result = await env.cli("backup", str(dest))
    assert result.returncode == 0, result.stderr
    assert await sender == 10

    restored = write_config(tmp_path / "restored.toml", dest, None)
    listing = await asyncio.to_thread(
        run_cli, "--config", str(restored), "ticket", "list", "--json"
    )
    assert listing.returncode == 0, listing.stderr
    subjects = {t["subject"] for t in json.loads(listing.stdout)}
    assert {f"Vorher {i}" for i in range(5)} <= subjects
    db = sqlite3.connect(dest / DB_NAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        shas = [r[0] for r in db.execute("SELECT raw_sha256 FROM articles")]
        shas += [r[0] for r in db.execute("SELECT sha256 FROM attachments")]
    finally:
        db.close()
    for sha in shas:
        blob = dest / "blobs" / sha[:2] / sha[2:4] / sha
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha


@pytest.mark.sqlite_only  # SQLite's backup into a directory; pg_dump's: test_pg_storage
async def test_backup_refuses_a_non_empty_destination(env: Env, tmp_path: Path) -> None:
    """An existing, non-empty DEST is never overwritten: exit 1 with one line."""
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine", encoding="utf-8")
    result = await env.cli("backup", str(dest))
    assert result.returncode == 1
    assert "not an empty directory" in result.stderr
    assert (dest / "keep.txt").read_text(encoding="utf-8") == "mine"
