"""Start-up refuses a broken config before binding; the database runs in WAL, synchronous=FULL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, accepts_connections, eventually_sync, free_port, make_mail, write_config

from ticketmail.storage.paths import DB_NAME
from ticketmail.storage.store import Store

ANNA = "anna@schule.example"
EXIT_SECONDS = 30.0  # a config error must stop `serve` well within this


# --- a broken config stops `serve` before any port is bound ----------------------------------


@pytest.mark.parametrize(
    ("smtp", "extra", "key"),
    [
        ({"prot": 1}, {}, "smtp.prot"),
        ({"port": "x"}, {}, "smtp.port"),
        ({}, {"relay": {"security": "ssl"}}, "relay.security"),
    ],
    ids=["unknown-key", "wrong-type", "bad-choice"],
)
def test_serve_with_broken_config_exits_2_with_one_line_and_never_binds(
    tmp_path: Path, smtp: dict[str, Any], extra: dict[str, dict[str, Any]], key: str
) -> None:
    """`serve` with a bad key, type or value: exit 2, one line naming file and key, no bind."""
    port = free_port()
    data_dir = tmp_path / "var"
    config = write_config(
        tmp_path / "config.toml", data_dir, None, smtp={"port": port, **smtp}, **extra
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
    environ.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ticketmail", "--config", str(config), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=tmp_path,
    )  # fmt: skip
    started = time.monotonic()
    answered: list[bool] = []

    def exited() -> bool:
        # Probe the configured port while the process lives: it must never answer.
        answered.append(accepts_connections(port))
        return proc.poll() is not None

    try:
        eventually_sync(exited, seconds=EXIT_SECONDS, what="serve exited", every=0.02)
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 2, (proc.returncode, stdout, stderr)
    assert time.monotonic() - started < EXIT_SECONDS
    lines = stderr.decode("utf-8").splitlines()
    assert len(lines) == 1, lines
    assert str(config) in lines[0]
    assert key in lines[0]
    assert "Traceback" not in lines[0]
    assert b"daemon_started" not in stdout + stderr
    assert b"accepting" not in stdout + stderr
    assert not any(answered), "the port answered while a broken config was being read"
    assert not accepts_connections(port)
    assert not (data_dir / DB_NAME).exists(), "start-up went as far as opening the store"


# --- WAL and synchronous=FULL -----------------------------------------------------------------


async def _pragma(store: Store, name: str) -> object:
    """A setting of the writer's connection, read in a job on it."""
    value: object = await store.write(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])
    return value


@pytest.mark.sqlite_only
async def test_database_is_in_wal_mode_after_a_mail_was_accepted(env: Env) -> None:
    """The data dir's database file is in WAL journal mode once a mail was answered 250.
    (SQLite only: its journal mode and -wal file; PostgreSQL has its own WAL.)"""
    code, text = await env.send(make_mail(ANNA, "Drucker druckt nicht"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    path = env.data_dir / DB_NAME
    db = sqlite3.connect(path)
    try:
        # WAL is a property of the file: any new connection reads it back.
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # The accepted mail is committed, visible to another connection right after 250.
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)
    finally:
        db.close()
    assert (env.data_dir / f"{DB_NAME}-wal").exists(), "no write-ahead log beside the database"


@pytest.mark.sqlite_only
async def test_store_connections_run_with_synchronous_full(env: Env) -> None:
    """The daemon's writer connection, and one opened as the CLI does, use synchronous=FULL (2).
    (SQLite only: PRAGMAs of SQLite's connections.)"""
    assert env.daemon.store is not None
    assert await _pragma(env.daemon.store, "synchronous") == 2
    assert await _pragma(env.daemon.store, "journal_mode") == "wal"
    other = await Store.open(env.data_dir)
    try:
        assert await _pragma(other, "synchronous") == 2
        assert await _pragma(other, "journal_mode") == "wal"
    finally:
        await other.close()
