"""Nothing is lost: a mail whose processing fails is quarantined, or refused with 451."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SUPPORT, Env, make_mail, stored_blob

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
    assert stored_blob(e.data_dir, held[0]["sha256"]) is not None

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
    assert again.returncode == 1  # a refusal, as `held release` of a released mail
    assert again.stderr == f"ticketmail: quarantine entry {held[0]['id']} was already retried\n"


async def _quarantining(env_factory: Any, sink: object, tmp_path: Path) -> tuple[Env, Path]:
    """A daemon whose ticket_created template is broken: every new ticket's mail is quarantined.

    Returns it and the template's path; the good template is kept beside it as `.good`.
    """
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    e: Env = await env_factory(sink, templates={"dir": str(templates)})
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042", lang="de")
    broken = templates / "de" / "ticket_created.txt.j2"
    shutil.copy(broken, broken.with_suffix(".good"))
    broken.write_text("Subject: {{ tag }} {{ no_such_variable }}\n\nbody\n", encoding="utf-8")
    return e, broken


async def test_quarantine_show_prints_the_entry_and_headers_not_the_body(
    env_factory: object, sink: object, tmp_path: Path
) -> None:
    """`quarantine show ID` prints the entry, the error and the headers (made safe), no body."""
    e, broken = await _quarantining(env_factory, sink, tmp_path)
    raw = (
        b"From: Anna <anna@schule.example>\r\nTo: support@stueber.de\r\n"
        b"Subject: Beamer flackert\r\nX-Note: caf\xe9 \x1b[31mrot\r\n"
        b"X-Folded: erste Zeile\r\n zweite Zeile\r\nMessage-ID: <q1@client.example>\r\n"
        b"\r\nGEHEIMER-TEXT im Body\r\nX-Not-A-Header: auch Body\r\n"
    )
    code, text = await e.send(raw, mail_from="anna@schule.example")
    assert code == 250
    assert "held for review" in text

    shown = await e.cli("quarantine", "show", "1")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    sha = hashlib.sha256(raw).hexdigest()
    for line in (
        "Quarantine entry 1",
        "Status:        held",
        "Envelope from: anna@schule.example",
        f"Envelope to:   {SUPPORT}",
        f"Size:          {len(raw)} bytes",
        f"SHA-256:       {sha}",
        "Subject: Beamer flackert",
        "X-Note: caf\ufffd \ufffd[31mrot",  # a bad byte and ESC, replaced, not passed on
        "X-Folded: erste Zeile",
        " zweite Zeile",
        "Message-ID: <q1@client.example>",
    ):
        assert line in out.splitlines(), (line, out)
    assert "no_such_variable" in next(x for x in out.splitlines() if x.startswith("Error:"))
    assert "Received:      20" in out
    assert "GEHEIMER-TEXT" not in out
    assert "X-Not-A-Header" not in out
    assert "\x1b" not in out

    as_json = json.loads((await e.cli("quarantine", "show", "1", "--json")).stdout)
    assert {k: as_json[k] for k in ("id", "envelope_from", "envelope_to", "sha256", "size",
                                    "status", "outcome")} == {
        "id": 1, "envelope_from": "anna@schule.example", "envelope_to": [SUPPORT],
        "sha256": sha, "size": len(raw), "status": "held", "outcome": "",
    }  # fmt: skip
    assert "no_such_variable" in as_json["error"]
    assert as_json["received_at"].startswith("20")
    assert as_json["headers"].splitlines()[2:4] == [
        "Subject: Beamer flackert",
        "X-Note: caf\ufffd \ufffd[31mrot",
    ]
    assert "GEHEIMER-TEXT" not in json.dumps(as_json, ensure_ascii=False)

    shutil.copy(broken.with_suffix(".good"), broken)
    assert (await e.cli("quarantine", "retry", "1")).returncode == 0
    after = await e.cli("quarantine", "show", "1")
    assert "Status:        retried: ticket_created" in after.stdout.splitlines()


@pytest.mark.sqlite_only  # breaks the blobs/ directory, which PostgreSQL has not
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
