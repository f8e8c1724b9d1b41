"""Phone numbers (SPEC 3, 9.1): what counts as one and how it is dialled, `user add --phone`
and `user import`'s phone column through the real CLI, and the migration that brings
phone numbers and tickets' channels to a database of the version before."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_cli, write_config
from desk_schema import undo_schema_9
from hypothesis import given
from hypothesis import strategies as st

from ticketmail.errors import UsageError
from ticketmail.inputs import MAX_PHONE, parse_phone, tel_uri
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.paths import DB_NAME
from ticketmail.storage.store import CustomerRow, Store, UserRow

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_phone_numbers_as_people_write_them() -> None:
    """Digits, spaces, + - / ( ) up to MAX_PHONE characters are a phone number (spaces made
    single); empty is none; letters, other signs, no digit or too long are refused."""
    assert parse_phone("  +49 (0)30 /  123 45-6 ") == "+49 (0)30 / 123 45-6"
    assert parse_phone("") == ""
    assert parse_phone("   ") == ""
    assert parse_phone("1" * MAX_PHONE) == "1" * MAX_PHONE
    for bad in ("0800-TICKET", "030;123", "+49 30 123 ext. 4", "---", "()", "1" * (MAX_PHONE + 1),
                "١٢٣", "030\x00123", "<b>030</b>"):  # fmt: skip
        with pytest.raises(UsageError, match="is not a phone number"):
            parse_phone(bad)


def test_tel_links_dial_the_digits() -> None:
    """A tel: link keeps a leading + and the digits; in the international form "(0)" is left
    out; no digits, no link."""
    assert tel_uri("+49 (0)30 / 123 45-6") == "tel:+4930123456"
    assert tel_uri("(030) 123 45-6") == "tel:030123456"
    assert tel_uri("0176 / 555 12 34") == "tel:01765551234"
    assert tel_uri("") == ""


@given(st.text(alphabet="0123456789 +-/()", max_size=40))
def test_every_accepted_number_has_a_link_of_plus_and_digits(text: str) -> None:
    """Whatever parse_phone accepts links as tel: with at most a leading + and digits."""
    try:
        phone = parse_phone(text)
    except UsageError:
        return
    link = tel_uri(phone)
    assert (link == "") == (phone == "")
    if link:
        assert link.removeprefix("tel:").lstrip("+").isdigit()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli("--config", str(config), *args)
    assert "Traceback" not in result.stderr
    return result


def users(config: Path) -> dict[str, dict[str, object]]:
    result = cli(config, "user", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {u["email"]: u for u in json.loads(result.stdout)}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "config.toml", tmp_path / "var", None)
    assert cli(path, "customer", "add", "10042", "Gymnasium Musterstadt").returncode == 0
    return path


def test_user_add_keeps_a_phone_number_and_refuses_a_bad_one(config: Path) -> None:
    """`user add --phone` stores the number (`user list` shows it); `user add` again without
    --phone keeps it, with --phone "" removes it; a bad one: exit 2, one line, nothing kept."""
    anna = "anna@schule.example"
    ok = cli(config, "user", "add", anna, "--customer", "10042", "--phone", "030 123 45-6")
    assert ok.returncode == 0, ok.stderr
    assert users(config)[anna]["phone"] == "030 123 45-6"
    assert "030 123 45-6" in cli(config, "user", "list").stdout
    assert cli(config, "user", "add", anna, "--customer", "10042", "--name", "Anna").returncode == 0
    assert users(config)[anna]["phone"] == "030 123 45-6"
    bad = cli(config, "user", "add", "ben@schule.example", "--customer", "10042",
              "--phone", "ruf mich an")  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "ticketmail: phone: 'ruf mich an' is not a phone number (digits, spaces, + - / ( ), "
        "at most 30 characters)"
    ]
    assert "ben@schule.example" not in users(config)
    assert cli(config, "user", "add", anna, "--customer", "10042", "--phone", "").returncode == 0
    assert users(config)[anna]["phone"] == ""


def test_user_import_takes_an_optional_phone_column(config: Path, tmp_path: Path) -> None:
    """`user import` reads a phone column when the header names one (all or none: a bad
    number names its line and nothing is imported); without it users have none."""
    path = tmp_path / "users.csv"
    path.write_text("email,customer,name,lang,phone\nanna@schule.example,10042,Anna,de,"
                    "030 1234\nben@schule.example,10042,Ben,en,\n", encoding="utf-8")  # fmt: skip
    assert cli(config, "user", "import", str(path)).returncode == 0
    found = users(config)
    assert (found["anna@schule.example"]["phone"], found["ben@schule.example"]["phone"]) == (
        "030 1234", "",
    )  # fmt: skip
    path.write_text("phone,email,customer,name,lang\n0176 1,carl@schule.example,10042,,\n"
                    "Tel. 5,dora@schule.example,10042,,\n", encoding="utf-8")  # fmt: skip
    bad = cli(config, "user", "import", str(path))
    assert bad.returncode == 2
    assert f"{path} line 3: phone: 'Tel. 5' is not a phone number" in bad.stderr
    assert "carl@schule.example" not in users(config)


@pytest.mark.sqlite_only
async def test_the_migration_marks_web_tickets_and_gives_users_no_phone(tmp_path: Path) -> None:
    """A database of the version before phone numbers: its users get none, a ticket opened in
    the portal becomes channel 'web', one opened by mail 'mail'. (SQLite only: a migration
    of SQLite's schema; PostgreSQL has no migrations before version 13.)"""
    store = await Store.open(tmp_path)
    try:
        await store.add_customers([CustomerRow("10042", "Gymnasium")], now=NOW)
        await store.add_users([UserRow("anna@schule.example", "10042", "Anna")], now=NOW)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    with conn:
        undo_schema_9(conn)
        for number, flags, message in ((100001, '["web"]', None), (100002, "[]", 1)):
            conn.execute(
                "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
                "updated_at) VALUES (?, '10042', 'anna@schule.example', 'Frage', 'new', ?, ?)",
                (number, NOW.isoformat(), NOW.isoformat()),
            )
            conn.execute(
                "INSERT INTO articles(ticket, message, direction, automatic, sender, to_json, "
                "cc_json, subject, message_id, in_reply_to, references_json, body_text, "
                "reply_text, flags_json, created_at) VALUES (?, ?, 'in', 0, "
                "'anna@schule.example', '[]', '[]', 'Frage', '', '', '[]', 'x', 'x', ?, ?)",
                (number, message, flags, NOW.isoformat()),
            )
    conn.close()

    store = await Store.open(tmp_path)
    try:
        listed = await store.list_users()
        assert [(u.email, u.phone) for u in listed] == [("anna@schule.example", "")]
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        channels = conn.execute("SELECT number, channel FROM tickets ORDER BY number").fetchall()
        assert channels == [(100001, "web"), (100002, "mail")]
    finally:
        conn.close()
