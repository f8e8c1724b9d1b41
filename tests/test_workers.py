"""smtp.workers: parsing, the sender check and the files in worker processes (real ones)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Env,
    Sink,
    accepts_connections,
    eventually,
    free_port,
    make_mail,
    stored_blob,
    stored_blob_count,
    write_config,
)

from ticketmail.daemon import Daemon
from ticketmail.intake.admission import Envelope

WORKERS = {"workers": 2}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def _alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for the daemon to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _gone(pid: int, *, seconds: float = 10.0) -> bool:
    """True once the process has ended; an AssertionError naming it after `seconds`."""
    return await eventually(lambda: not _alive(pid), seconds=seconds, what=f"process {pid} ended")


def _pids(daemon: Daemon) -> list[int]:
    assert daemon.intake is not None
    assert daemon.intake.pool is not None
    return daemon.intake.pool.pids()


def _owed(env: Env) -> int:
    """Mails handed to the worker processes and not yet answered."""
    pool = env.daemon.intake.pool if env.daemon.intake is not None else None
    assert pool is not None
    return sum(len(worker.owed) for worker in pool._all)


def _mail_with_png(sender: str, subject: str) -> bytes:
    mail = make_mail(sender, subject)
    mail.add_attachment(PNG, maintype="image", subtype="png", filename="bildschirm.png")
    return mail.as_bytes()


async def _registered(env_factory: Any, sink: Sink) -> Env:
    env: Env = await env_factory(sink, smtp=WORKERS)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user("anna@schule.example", "10042", name="Anna Müller", lang="de")
    return env


async def test_a_mail_goes_through_a_worker_process_into_a_ticket_with_its_file(
    env_factory: Any, sink: Sink
) -> None:
    env = await _registered(env_factory, sink)
    pids = _pids(env.daemon)
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert all(map(_alive, pids))

    code, reply = await env.send(_mail_with_png("anna@schule.example", "Drucker kaputt"))

    assert code == 250, reply
    number = int(reply.rsplit(" ", 1)[1])
    ticket = await env.cli_json("ticket", "show", str(number))
    (article,) = ticket["articles"]
    (attachment,) = article["attachments"]
    assert attachment["filename"] == "bildschirm.png"
    assert attachment["sha256"] == hashlib.sha256(PNG).hexdigest()
    sha = attachment["sha256"]
    assert stored_blob(env.data_dir, sha) == PNG
    (confirmation,) = await sink.wait_for(1)
    assert f"[Ticket#{number}]" in confirmation.message["Subject"]


async def test_an_unregistered_sender_is_refused_in_the_worker_before_any_file_is_written(
    env_factory: Any, sink: Sink
) -> None:
    env = await _registered(env_factory, sink)

    code, reply = await env.send(_mail_with_png("fremd@example.org", "Hallo"))

    assert code == 550
    assert "5.7.1" in reply
    assert "fremd@example.org" in reply
    assert stored_blob_count(env.data_dir) == 0


async def test_killed_workers_are_replaced_and_the_next_mail_still_lands(
    env_factory: Any, sink: Sink
) -> None:
    """Both workers killed while idle (the OOM killer, an admin): the next mail waits for
    fresh ones and lands; nothing goes to the quarantine."""
    env = await _registered(env_factory, sink)
    old = _pids(env.daemon)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    for pid in old:
        assert await _gone(pid)

    code, reply = await env.send(make_mail("anna@schule.example", "Nach dem Absturz"))

    assert code == 250, reply
    assert "ticket" in reply
    new = _pids(env.daemon)
    assert new
    assert not set(old) & set(new)
    assert all(map(_alive, new))
    assert await env.cli_json("quarantine", "list") == []


async def test_a_worker_outlives_ctrl_c_and_sigterm_aimed_at_it(
    env_factory: Any, sink: Sink
) -> None:
    """Ctrl-C reaches the whole process group (and systemd may signal the whole cgroup):
    the workers keep working until the daemon itself ends them."""
    env = await _registered(env_factory, sink)
    pids = _pids(env.daemon)
    for pid in pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    # Each worker answers a mail after the signals (the least busy one takes the next mail):
    # a worker the signals had killed could not have, and would have been replaced.
    subjects = ["Nach SIGINT", "Nach SIGTERM"]
    mails = [make_mail("anna@schule.example", s).as_bytes() for s in subjects]
    assert await asyncio.gather(*(_admit(env, raw) for raw in mails)) == subjects

    assert all(map(_alive, pids))
    assert (await env.send(make_mail("anna@schule.example", "Nach Strg-C")))[0] == 250
    assert _pids(env.daemon) == pids


async def test_stopping_the_daemon_ends_its_worker_processes(env_factory: Any, sink: Sink) -> None:
    env = await _registered(env_factory, sink)
    assert (await env.send(make_mail("anna@schule.example", "Vor dem Stopp")))[0] == 250
    pids = _pids(env.daemon)

    await env.daemon.stop(grace=5)

    assert [pid for pid in pids if not await _gone(pid)] == []
    assert env.daemon.intake is None  # closed: a second stop (the fixture's) finds nothing


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text(encoding="ascii").split()]
    return found


async def test_workers_end_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """kill -9 of `ticketmail serve`: its workers see their socket close and exit, no orphan
    is left holding the data directory."""
    port = free_port()
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, smtp={"port": port, **WORKERS}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ticketmail", "--config", str(config), "serve",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[int] = []

    def started() -> bool:
        workers[:] = [p for p in _children(proc.pid) if "worker_main" in _cmdline(p)]
        return len(workers) == 2 and accepts_connections(port)

    try:
        await eventually(started, seconds=20, what=lambda: f"2 workers and the port: {workers}")
        assert len(workers) == 2
    finally:
        proc.kill()
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert [pid for pid in workers if not await _gone(pid)] == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.sqlite_only  # breaks the blobs/ directory, which PostgreSQL has not
async def test_an_error_inside_a_worker_comes_back_and_the_worker_goes_on(
    env_factory: Any, sink: Sink
) -> None:
    """The blob store unusable (a file where its directory should be): the worker's error
    travels back, the mail is refused with 451 (even the quarantine cannot be written, so
    the sending server keeps it), and once fixed the same workers take the next mail."""
    env = await _registered(env_factory, sink)
    pids = _pids(env.daemon)
    blobs = env.data_dir / "blobs"
    if blobs.exists():
        shutil.rmtree(blobs)
    blobs.write_text("not a directory", encoding="utf-8")

    code, reply = await env.send(make_mail("anna@schule.example", "Kaputtes Lager"))

    assert code == 451, reply
    assert "4.3.0" in reply
    blobs.unlink()
    assert (await env.send(make_mail("anna@schule.example", "Wieder heil")))[0] == 250
    assert _pids(env.daemon) == pids


def _big_mail(subject: str) -> bytes:
    """A mail a worker takes a while over (megabytes of text to parse and store)."""
    mail = make_mail("anna@schule.example", subject)
    mail.set_content("Zeile mit etwas Text für den Parser, immer wieder.\n" * 80_000)
    return mail.as_bytes()


async def _admit(env: Env, raw: bytes) -> str:
    """The subject of the mail a worker answered about, for `raw` given to the pool."""
    pool = env.daemon.intake.pool if env.daemon.intake is not None else None
    assert pool is not None
    admitted = await pool.admit(
        raw, Envelope("anna@schule.example", ("support@stueber.de",)), sender_vouched=False,
        now=datetime.now(UTC),
    )  # fmt: skip
    return admitted.mail.subject


async def test_a_worker_killed_with_two_mails_on_it_loses_neither(
    env_factory: Any, sink: Sink
) -> None:
    """One worker, given a long mail and a short one behind it, killed while on the first:
    both are tried again on its replacement and come back, each with its own answer."""
    env = await env_factory(sink, smtp={"workers": 1})
    [pid] = _pids(env.daemon)
    long = asyncio.create_task(_admit(env, _big_mail("Lang")))
    short = asyncio.create_task(_admit(env, make_mail("anna@schule.example", "Kurz").as_bytes()))
    await eventually(lambda: _owed(env) == 2, what="both mails handed to the worker")
    os.kill(pid, signal.SIGKILL)  # on the first, the second waiting in its socket
    assert await asyncio.wait_for(asyncio.gather(long, short), timeout=60) == ["Lang", "Kurz"]
    assert await _gone(pid)
    assert _pids(env.daemon) != [pid]


async def test_an_answer_for_a_cancelled_mail_is_not_taken_for_the_next(
    env_factory: Any, sink: Sink
) -> None:
    """A mail given up (its SMTP session ended) while its worker is still on it: the next
    mail gets its own answer, from the same worker."""
    env = await env_factory(sink, smtp={"workers": 1})
    pids = _pids(env.daemon)
    first = asyncio.create_task(_admit(env, _big_mail("Aufgegeben")))
    await eventually(lambda: _owed(env) == 1, what="the mail handed to the worker")
    first.cancel()
    next_mail = make_mail("anna@schule.example", "Danach").as_bytes()
    assert await asyncio.wait_for(_admit(env, next_mail), timeout=60) == "Danach"
    assert await asyncio.wait_for(_admit(env, next_mail), timeout=60) == "Danach"
    assert _pids(env.daemon) == pids


async def test_a_worker_whose_daemon_is_gone_before_it_said_anything_ends_quietly() -> None:
    """The daemon killed while it starts a worker: the worker finds its socket closed before
    its config came, and ends with status 0 and nothing on stderr (no traceback in the log)."""
    ours, theirs = socket.socketpair()
    fd = theirs.fileno()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import ticketmail.intake.admission as m; m.worker_main({fd})",
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        theirs.close()
    ours.close()  # as the kernel does for a daemon killed here
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert (proc.returncode, stderr.decode()) == (0, "")
