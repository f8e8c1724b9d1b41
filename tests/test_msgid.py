"""Signed Message-IDs: only genuine ones thread a mail or mark it as our own; the secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, make_mail, run_cli, write_config
from desk_support import ANNA, OWN_ID, settle, signer, the_sink
from hypothesis import given
from hypothesis import strategies as st

from ticketmail.config import load_config
from ticketmail.errors import ConfigError
from ticketmail.mail.msgid import MessageIds
from ticketmail.storage.store import Store

SECRET = "ein-langes-geheimnis-0123456789"
IDS = MessageIds("stueber.de", SECRET.encode())
M1 = "<t1@schule.example>"


# --- the signature ---------------------------------------------------------------------------


@given(ticket=st.integers(min_value=0, max_value=10**12 - 1))
def test_generated_ids_verify_and_name_their_ticket(ticket: int) -> None:
    """Every generated ID has our shape, verifies, and names its ticket."""
    mid = IDS.new(ticket)
    assert OWN_ID.fullmatch(mid) is not None
    assert IDS.verify(mid) == ticket
    assert IDS.is_genuine(f"  {mid} ")


def test_forged_or_foreign_ids_are_not_genuine() -> None:
    """Another ticket number, another secret or a foreign ID: not ours."""
    mid = IDS.new(100001)
    assert IDS.verify(mid.replace("tm.100001.", "tm.100002.")) is None
    assert MessageIds("stueber.de", b"another-secret-0123456789").verify(mid) is None
    assert IDS.verify(mid[:-15] + "0000000000@stueber.de>") is None
    assert IDS.verify("<t1@schule.example>") is None
    assert IDS.verify(mid.upper()) is None
    assert IDS.looks_own(mid.replace("tm.100001.", "tm.100002."))
    assert not IDS.looks_own("<t1@schule.example>")
    assert IDS.new() != IDS.new()
    assert IDS.verify(IDS.new()) == 0


async def test_data_directory_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    """Without TICKETMAIL_SECRET the data directory keeps one random secret for every process."""
    first = await Store.open(tmp_path)
    try:
        secret = await first.message_id_secret()
        assert len(secret) == 64
        assert await first.message_id_secret() == secret
    finally:
        await first.close()
    again = await Store.open(tmp_path)
    try:
        assert await again.message_id_secret() == secret
    finally:
        await again.close()


# --- threading and loop detection over a running daemon -------------------------------------


async def open_ticket(env: Env) -> str:
    """Anna opens ticket 100001; returns the Message-ID of the confirmation."""
    mail = make_mail(ANNA, "Drucker druckt nicht", message_id=M1)
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    [confirmation] = await the_sink(env).wait_for(1)
    return str(confirmation.message["Message-ID"])


async def test_answer_to_a_status_notice_without_tag_lands_on_the_ticket(env: Env) -> None:
    """A customer's answer naming only a status notice (In-Reply-To) lands on its ticket."""
    await open_ticket(env)
    assert (await env.cli("ticket", "status", "100001", "answered")).returncode == 0
    notice = (await settle(env, 2))[1]
    notice_id = str(notice.message["Message-ID"])
    assert (await signer(env)).verify(notice_id) == 100001
    answer = make_mail(ANNA, "AW: Statusänderung", "Danke!\n", headers={"In-Reply-To": notice_id})
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "open"


async def test_forged_reference_of_our_shape_threads_nothing(env: Env) -> None:
    """A reference shaped like ours whose signature fails opens a new ticket instead."""
    genuine = await open_ticket(env)
    forged = genuine[:-22] + "0123456789@stueber.de>"
    assert forged != genuine
    answer = make_mail(
        ANNA, "AW: Drucker", "Noch was.\n", headers={"In-Reply-To": forged, "References": forged}
    )
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100002")
    genuine_answer = make_mail(ANNA, "AW: Drucker", "Noch was.\n", headers={"References": genuine})
    assert await env.send(genuine_answer) == (250, "2.0.0 Ok: ticket 100001")


async def test_forged_own_message_id_is_no_loop_but_genuine_one_is(env: Env) -> None:
    """Only a genuinely signed Message-ID marks a mail as our own (loop): a forged one does not."""
    genuine = await open_ticket(env)
    forged = (await signer(env)).new(100001)[:-22] + "abcdefabcd@stueber.de>"
    fake = make_mail(ANNA, "Neue Frage", message_id=forged)
    assert await env.send(fake) == (250, "2.0.0 Ok: ticket 100002")
    echo = make_mail(ANNA, "Echo", message_id=genuine)
    assert await env.send(echo) == (250, "2.0.0 Ok")
    signed = make_mail(ANNA, "Echo", message_id=(await signer(env)).new(100001))
    assert await env.send(signed) == (250, "2.0.0 Ok"), "signed but never sent: still ours"
    assert len(await env.cli_json("ticket", "list")) == 2


# --- the secret from the environment ---------------------------------------------------------


def test_secret_from_environment_or_dotenv(tmp_path: Path) -> None:
    """TICKETMAIL_SECRET comes from the environment, else from a .env beside the config."""
    # On SQLite on either run: the test writes a .env of its own (no database URL in it).
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, storage={"backend": "sqlite"}
    )
    assert load_config(config, environ={"TICKETMAIL_SECRET": SECRET}).mail.secret == SECRET
    (tmp_path / ".env").write_text(f"TICKETMAIL_SECRET={SECRET}x\n", encoding="utf-8")
    assert load_config(config, environ={}).mail.secret == SECRET + "x"
    assert SECRET not in repr(load_config(config, environ={}))


def test_short_secret_or_secret_in_file_is_a_config_error(tmp_path: Path) -> None:
    """A short TICKETMAIL_SECRET, or a secret key in config.toml, stops start-up (exit 2)."""
    config = write_config(tmp_path / "config.toml", tmp_path / "var", None)
    with pytest.raises(ConfigError, match="TICKETMAIL_SECRET: must be at least 16"):
        load_config(config, environ={"TICKETMAIL_SECRET": "short"})
    result = run_cli("--config", str(config), "check-config", env={"TICKETMAIL_SECRET": "short"})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('[mail]\nsecret = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key mail\.secret .*TICKETMAIL_SECRET"):
        load_config(bad, environ={})


def test_check_config_masks_the_secret(tmp_path: Path) -> None:
    """check-config never prints the secret, and says when none is set."""
    config = write_config(tmp_path / "config.toml", tmp_path / "var", None)
    shown = run_cli("--config", str(config), "check-config", "--json",
                    env={"TICKETMAIL_SECRET": SECRET})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout
    assert json.loads(shown.stdout)["config"]["mail"]["secret"] == "********"
    unset = run_cli("--config", str(config), "check-config", "--json")
    assert "not set" in json.loads(unset.stdout)["config"]["mail"]["secret"]


async def test_daemon_and_cli_sign_with_the_configured_secret(
    env_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """With TICKETMAIL_SECRET (.env) the daemon's and the CLI's mails verify with it."""
    (tmp_path / ".env").write_text(f"TICKETMAIL_SECRET={SECRET}\n", encoding="utf-8")
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", lang="de")
    confirmation = await open_ticket(env)
    assert IDS.verify(confirmation) == 100001
    assert (await env.cli("ticket", "status", "100001", "closed")).returncode == 0
    notice = (await settle(env, 2))[1]
    assert IDS.verify(str(notice.message["Message-ID"])) == 100001
