"""Nothing is lost: a mail whose processing fails is quarantined, or refused with 451."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import Env, make_mail

from ticketmail.config import default_templates_dir


async def test_processing_failure_quarantines_and_retry_opens_ticket(
    env_factory: object, sink: object, tmp_path: Path
) -> None:
    """A mail that trips an error is quarantined (250); `retry` later turns it into a ticket."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    e: Env = await env_factory(sink, templates={"dir": str(templates)})  # type: ignore[operator]
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042", lang="de")

    # Break the template after start-up: rendering the confirmation now fails.
    good = (templates / "de" / "ticket_created.txt.j2").read_text(encoding="utf-8")
    (templates / "de" / "ticket_created.txt.j2").write_text(
        "Subject: {{ tag }} {{ no_such_variable }}\n\nbody\n", encoding="utf-8"
    )
    code, text = await e.send(make_mail("anna@schule.example", "Beamer flackert"))
    assert code == 250
    assert "held for review" in text

    held = await e.cli_json("quarantine", "list")
    assert len(held) == 1
    assert held[0]["status"] == "held"
    assert "no_such_variable" in held[0]["error"]
    assert await e.cli_json("ticket", "list") == []
    blob = e.data_dir / "blobs" / held[0]["sha256"][:2] / held[0]["sha256"][2:4] / held[0]["sha256"]
    assert blob.is_file()

    (templates / "de" / "ticket_created.txt.j2").write_text(good, encoding="utf-8")
    retried = await e.cli("quarantine", "retry", str(held[0]["id"]))
    assert retried.returncode == 0, retried.stderr
    assert "ticket_created" in retried.stdout

    tickets = await e.cli_json("ticket", "list")
    assert [t["subject"] for t in tickets] == ["Beamer flackert"]
    after = await e.cli_json("quarantine", "list")
    assert after[0]["status"] == "retried"
    assert after[0]["outcome"] == "ticket_created"
    again = await e.cli("quarantine", "retry", str(held[0]["id"]))
    assert again.returncode == 2
    assert "already retried" in again.stderr


async def test_quarantine_unwritable_answers_451_and_keeps_nothing(env: Env) -> None:
    """When not even the quarantine can be written, the reply is 451 4.3.0 and nothing is stored."""
    blobs = env.data_dir / "blobs"
    shutil.rmtree(blobs, ignore_errors=True)
    blobs.write_bytes(b"not a directory")  # every blob write now fails, as on a broken disk
    code, text = await env.send(make_mail("anna@schule.example", "Passwort vergessen"))
    assert code == 451
    assert text.startswith("4.3.0")
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("quarantine", "list") == []
    assert await env.cli_json("outbox", "list") == []

    blobs.unlink()
    code, text = await env.send(make_mail("anna@schule.example", "Passwort vergessen"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")


async def test_retry_all_reports_entries_still_failing(env: Env) -> None:
    """`quarantine retry --all` with nothing held succeeds and says nothing is wrong."""
    result = await env.cli("quarantine", "retry", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
