"""Helpers for the support team's tests: agents, CLI runs with stdin, reading sent mail."""

from __future__ import annotations

import asyncio
import re
import subprocess
from email.message import EmailMessage
from pathlib import Path

from conftest import Env, Received, Sink, all_mail_out, make_mail, run_cli

from ticketmail.mail.msgid import MessageIds

ANNA = "anna@schule.example"
BEN = "ben@schule.example"
CARL = "carl@real.example"
MAX = "max@stueber.de"
TAG = "[Ticket#100001]"
M1 = "<t1@schule.example>"
OWN_ID = re.compile(r"<tm\.(\d+)\.[0-9a-f]{16}\.[0-9a-f]{10}@stueber\.de>")


def the_sink(env: Env) -> Sink:
    assert env.sink is not None
    return env.sink


async def add_agent(env: Env, email: str = MAX, name: str = "Max Berger") -> None:
    result = await env.cli("agent", "add", email, "--name", name)
    assert result.returncode == 0, result.stderr


async def other_institution(env: Env) -> None:
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user(CARL, "20001", name="Carl Krause", lang="de")


async def cli_stdin(env: Env, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI with `text` on its standard input."""
    return await asyncio.to_thread(run_cli, "--config", str(env.config_path), *args, stdin=text)


async def signer(env: Env) -> MessageIds:
    """The Message-ID signer the daemon and the CLI share (the data directory's secret)."""
    assert env.daemon.store is not None
    secret = await env.daemon.store.message_id_secret()
    return MessageIds("stueber.de", secret.encode("utf-8"))


def body(received: Received) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None, "outbound mail has no text/plain part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def attachments(received: Received) -> list[tuple[str, str, bytes]]:
    """(filename, content type, data) of every attachment of a sent mail."""
    found: list[tuple[str, str, bytes]] = []
    for part in received.message.iter_attachments():
        assert isinstance(part, EmailMessage)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        found.append((part.get_filename() or "", part.get_content_type(), data))
    return found


def references(received: Received) -> list[str]:
    return str(received.message.get("References", "")).split()


async def settle(env: Env, count: int) -> list[Received]:
    """Wait until the outbox is done; the sink then holds exactly `count` mails (no more come)."""
    return await all_mail_out(env, count)


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


async def open_ticket(env: Env) -> None:
    """Anna opens ticket 100001; the confirmation arrives."""
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", message_id=M1)
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    await the_sink(env).wait_for(1)
