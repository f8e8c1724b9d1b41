"""`ticket merge NUMBER --into NUMBER --agent EMAIL` (SPEC 3, 9.1) against the real daemon:
what it prints, its exit statuses and refusals, the merged ticket in `ticket show --json`
and `ticket list`, a merged ticket refusing `ticket status` and `ticket reply`, a merge
into the ticket others were merged into; and the migration to schema 11."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Env, make_mail
from desk_schema import undo_schema_11
from desk_support import ANNA, MAX, add_agent, cli_stdin, one_line, open_ticket, settle
from test_desk_queue import _database, _ticket

from ticketmail.storage._schema import SCHEMA_VERSION, migrate
from ticketmail.storage.merge import final_number, merged_into_of


async def show(env: Env, number: int) -> Any:
    return await env.cli_json("ticket", "show", str(number))


async def merge(env: Env, *args: str) -> Any:
    return await env.cli("ticket", "merge", *args)


async def three_tickets(env: Env) -> int:
    """Anna's 100001, 100002 and 100003, each confirmed; Max is an agent. The mails sent."""
    await open_ticket(env)
    for number, subject in ((100002, "Beamer"), (100003, "WLAN")):
        mail = make_mail(ANNA, subject, f"{subject} geht nicht.\n")
        assert await env.send(mail) == (250, f"2.0.0 Ok: ticket {number}")
    await add_agent(env)
    return len(await settle(env, 3))


async def test_merge_prints_what_moved_and_mails_nobody(env: Env) -> None:
    """`ticket merge` moves the articles, says so, mails nobody; the source shows 'merged'
    with `merged_into` and the merge in its history (JSON), and is listed as merged."""
    sent = await three_tickets(env)
    result = await merge(env, "100002", "--into", "100001", "--agent", MAX)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ticket 100002 merged into ticket 100001: 1 article and 0 files moved; nobody was mailed"
    )
    await settle(env, sent)  # the customer is not mailed about a merge
    source = await show(env, 100002)
    assert (source["status"], source["merged_into"], source["articles"]) == ("merged", "100001", [])
    history = [(h["what"], h["from"], h["to"], h["by"]) for h in source["history"]]
    assert history == [("merge", "100002", "100001", MAX)]
    assert len((await show(env, 100001))["articles"]) == 2
    listed = await env.cli_json("ticket", "list", "--status", "merged")
    assert [t["number"] for t in listed] == ["100002"]


async def test_merge_refusals_and_exit_statuses(env: Env, tmp_path: Path) -> None:
    """Bad input: exit 2; a missing ticket or agent, a ticket into itself, a source merged
    already, a target that is merged: exit 1 with one clear line, nothing changed. A merged
    ticket refuses `ticket status` and `ticket reply` (exit 1) and 'merged' is no status
    one sets (exit 2)."""
    sent = await three_tickets(env)
    assert (await merge(env, "100002", "--into", "100001", "--agent", MAX)).returncode == 0
    before = [await show(env, n) for n in (100001, 100002, 100003)]
    for args, message in [
        (("100003", "--into", "999", "--agent", MAX), "ticket 999 does not exist"),
        (("999", "--into", "100001", "--agent", MAX), "ticket 999 does not exist"),
        (("100003", "--into", "100001", "--agent", "eva@stueber.de"), "is not registered"),
        (("100003", "--into", "100003", "--agent", MAX), "cannot be merged into itself"),
        (("100002", "--into", "100003", "--agent", MAX), "already merged into ticket 100001"),
        (("100003", "--into", "100002", "--agent", MAX), "merge into ticket 100001 instead"),
    ]:
        result = await merge(env, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert message in one_line(result.stderr), args
    for args in [("abc", "--into", "100001", "--agent", MAX), ("100003", "--agent", MAX),
                 ("100003", "--into", "100001", "--agent", "max")]:  # fmt: skip
        assert (await merge(env, *args)).returncode == 2, args
    status = await env.cli("ticket", "status", "100002", "open")
    assert status.returncode == 1
    assert "ticket 100002 is merged into ticket 100001" in one_line(status.stderr)
    assert (await env.cli("ticket", "status", "100003", "merged")).returncode == 2
    reply = await cli_stdin(env, "Hallo\n", "ticket", "reply", "100002", "--agent", MAX, "-")
    assert reply.returncode == 1
    assert "can no longer be changed" in one_line(reply.stderr)
    assert [await show(env, n) for n in (100001, 100002, 100003)] == before
    await settle(env, sent)


async def test_a_merge_of_a_merge_target_carries_its_sources_along(env: Env) -> None:
    """When the ticket others were merged into is merged itself, they name the new target,
    and mail with their tag lands there."""
    await three_tickets(env)
    assert (await merge(env, "100002", "--into", "100001", "--agent", MAX)).returncode == 0
    assert (await merge(env, "100001", "--into", "100003", "--agent", MAX)).returncode == 0
    assert (await show(env, 100002))["merged_into"] == "100003"
    assert len((await show(env, 100003))["articles"]) == 3
    later = make_mail(ANNA, "Re: [Ticket#100002] Beamer", "Noch da?\n")
    assert await env.send(later) == (250, "2.0.0 Ok: ticket 100003")


@pytest.mark.sqlite_only  # SQLite's schema migration from version 10
def test_a_version_10_database_gets_merged_into_and_chains_stop(tmp_path: Path) -> None:
    """The migration to schema 11 keeps a version 10 database's tickets, none merged; a
    chain of merged tickets is followed at most MAX_CHAIN steps (a loop ends)."""
    conn = _database(tmp_path)
    try:
        undo_schema_11(conn)
        _ticket(conn, 100001)
        _ticket(conn, 100002)
        migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert merged_into_of(conn, 100001, customer=None) is None
        assert final_number(conn, 100001) == 100001
        conn.execute("UPDATE tickets SET merged_into = 100002 WHERE number = 100001")
        conn.execute("UPDATE tickets SET merged_into = 100001 WHERE number = 100002")
        assert final_number(conn, 100001) in (100001, 100002)  # a damaged loop: it ends
        assert merged_into_of(conn, 100001, customer="20001") is None  # not theirs
    finally:
        conn.close()
