"""Configuration: defaults, --config / $TICKETMAIL_CONFIG, validation, secrets, check-config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketmail.config import Config, load_config
from ticketmail.errors import ConfigError

SECRET = "pw-7Qz!x9#relay"


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


SQLITE = {"backend": "sqlite"}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A config file; on SQLite on either run, since these tests write a .env of their own
    (which would drop a PostgreSQL URL beside it) and are about the file, not the database."""
    return write_config(tmp_path / "config.toml", tmp_path / "var", None, storage=SQLITE)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work (and run the CLI) in an empty directory: no stray .env, no ./var in the repo."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- defaults and where the file comes from ----------------------------------------------------


def test_built_in_defaults_without_a_file(elsewhere: Path) -> None:
    """With no file the built-in defaults apply: 127.0.0.1:2525, ./var, file relay, 25 MiB."""
    config = load_config(None, environ={})
    assert config.smtp.host == "127.0.0.1"
    assert config.smtp.port == 2525
    assert config.storage.data_dir == "./var"
    assert config.relay.transport == "file"
    assert config.smtp.max_message_bytes == 25 * 1024 * 1024
    assert config.relay.password == ""
    assert config == Config()


def test_check_config_without_file_shows_the_defaults(elsewhere: Path) -> None:
    """`check-config` with neither --config nor $TICKETMAIL_CONFIG reports the built-in defaults."""
    result = run_cli("check-config", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["source"] == "<built-in defaults>"
    assert shown["config"]["smtp"]["host"] == "127.0.0.1"
    assert shown["config"]["smtp"]["port"] == 2525
    assert shown["config"]["smtp"]["max_message_bytes"] == 25 * 1024 * 1024
    assert shown["config"]["storage"]["data_dir"] == "./var"
    assert shown["config"]["relay"]["transport"] == "file"
    assert (elsewhere / "var").is_dir()


def test_config_option_wins_over_environment(tmp_path: Path) -> None:
    """--config PATH is used when given; else $TICKETMAIL_CONFIG names the file."""
    by_env = write_config(tmp_path / "env.toml", tmp_path / "var", None, smtp={"port": 2601})
    by_option = write_config(tmp_path / "opt.toml", tmp_path / "var", None, smtp={"port": 2602})
    env = {"TICKETMAIL_CONFIG": str(by_env)}

    from_env = run_cli("check-config", "--json", env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["config"]["smtp"]["port"] == 2601

    from_option = run_cli("check-config", "--json", "--config", str(by_option), env=env)
    assert from_option.returncode == 0, from_option.stderr
    assert json.loads(from_option.stdout)["config"]["smtp"]["port"] == 2602
    assert json.loads(from_option.stdout)["source"] == str(by_option)


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_config_option_before_or_after_the_command(tmp_path: Path, before: bool) -> None:
    """`ticketmail --config X ticket list` and `ticketmail ticket list --config X` both use X."""
    path = write_config(tmp_path / "config.toml", tmp_path / "data", None, storage=SQLITE)
    args = ["ticket", "list", "--json"]
    args = ["--config", str(path), *args] if before else [*args, "--config", str(path)]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert (tmp_path / "data" / "ticketmail.sqlite3").is_file()


# --- a bad file stops everything with one line --------------------------------------------------

BAD_CONFIGS = {
    "unknown-section": ("[smpt]\nport = 25\n", "smpt"),
    "unknown-key": ("[smtp]\nprot = 25\n", "smtp.prot"),
    "unknown-top-level-key": ('data_dir = "/tmp"\n', "data_dir"),
    "wrong-type": ('[smtp]\nport = "25"\n', "smtp.port"),
    "bool-for-int": ("[smtp]\nport = true\n", "smtp.port"),
    "not-a-list": ('[smtp]\nrecipients = "support@stueber.de"\n', "smtp.recipients"),
    "section-not-table": ("smtp = 1\n", "smtp"),
    "bad-choice": ('[relay]\nsecurity = "ssl"\n', "relay.security"),
    "bad-transport": ('[relay]\ntransport = "carrier-pigeon"\n', "relay.transport"),
    "password-in-file": (f'[relay]\npassword = "{SECRET}"\n', "relay.password"),
    "not-finite": ("[relay]\ntimeout_seconds = nan\n", "relay.timeout_seconds"),
    "negative": ("[relay]\nmax_age_hours = -1\n", "relay.max_age_hours"),
    "port-range": ("[smtp]\nport = 70000\n", "smtp.port"),
    "workers-negative": ("[smtp]\nworkers = -1\n", "smtp.workers"),
    "workers-too-many": ("[smtp]\nworkers = 65\n", "smtp.workers"),
    "grace-zero": ("[smtp]\nshutdown_grace_seconds = 0\n", "smtp.shutdown_grace_seconds"),
    "grace-negative": ("[smtp]\nshutdown_grace_seconds = -5.0\n", "smtp.shutdown_grace_seconds"),
    "grace-string": ('[smtp]\nshutdown_grace_seconds = "30s"\n', "smtp.shutdown_grace_seconds"),
    "grace-infinite": ("[smtp]\nshutdown_grace_seconds = inf\n", "smtp.shutdown_grace_seconds"),
    "bad-address": ('[mail]\nfrom_address = "support"\n', "mail.from_address"),
    "bad-tag": ('[tickets]\nsubject_tag = "Ticket#"\n', "tickets.subject_tag"),
    "not-toml": ("this is not toml\n", "not valid TOML"),
    "not-utf8": ('[mail]\nfrom_name = "M\udcfcller"\n', "not UTF-8"),
    "nested-table": ("[smtp.extra]\nx = 1\n", "smtp.extra"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    """A bad section, key, type or value: exit 2, one stderr line naming the file and key."""
    text, key = BAD_CONFIGS[case]
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(path) in line
    assert key in line
    assert SECRET not in line
    assert result.stdout == ""


@pytest.mark.parametrize(("text", "seconds"), [("", 30.0), ("1", 1.0), ("0.25", 0.25)])
def test_shutdown_grace_seconds_is_a_positive_number(
    tmp_path: Path, text: str, seconds: float
) -> None:
    """smtp.shutdown_grace_seconds defaults to 30 and takes any number above 0, int or float."""
    path = tmp_path / "config.toml"
    path.write_text(f"[smtp]\nshutdown_grace_seconds = {text}\n" if text else "", encoding="utf-8")
    assert load_config(path, environ={}).smtp.shutdown_grace_seconds == seconds


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    """A --config file that does not exist: exit 2, one line naming the file."""
    path = tmp_path / "nowhere.toml"
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(path) in line
    assert "not found" in line


def test_bad_config_stops_every_command(tmp_path: Path) -> None:
    """Not only check-config: any command refuses a bad file with exit 2 and one line."""
    path = tmp_path / "config.toml"
    path.write_text('[relay]\nsecurity = "ssl"\n', encoding="utf-8")
    result = run_cli("ticket", "list", env={"TICKETMAIL_CONFIG": str(path)})
    assert result.returncode == 2
    assert "relay.security" in one_error_line(result)


def test_password_key_in_file_is_refused(tmp_path: Path) -> None:
    """The relay password can never come from the TOML file: a `password` key is unknown."""
    path = tmp_path / "config.toml"
    path.write_text(f'[relay]\nusername = "u"\npassword = "{SECRET}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key relay\.password") as caught:
        load_config(path, environ={})
    assert SECRET not in str(caught.value)


# --- the relay password: environment or .env ----------------------------------------------------


def test_password_from_environment(config_path: Path, elsewhere: Path) -> None:
    """TICKETMAIL_RELAY_PASSWORD in the environment becomes relay.password."""
    config = load_config(config_path, environ={"TICKETMAIL_RELAY_PASSWORD": SECRET})
    assert config.relay.password == SECRET
    assert SECRET not in repr(config)


def test_password_from_dotenv_beside_the_config(config_path: Path, elsewhere: Path) -> None:
    """A .env beside the config file supplies the password, without changing os.environ."""
    (config_path.parent / ".env").write_text(
        f"TICKETMAIL_RELAY_PASSWORD={SECRET}\nOTHER_SETTING=x\n", encoding="utf-8"
    )
    config = load_config(config_path, environ={})
    assert config.relay.password == SECRET
    assert "OTHER_SETTING" not in os.environ
    assert "TICKETMAIL_RELAY_PASSWORD" not in os.environ


def test_dotenv_in_working_directory(config_path: Path, elsewhere: Path) -> None:
    """A .env in the working directory is read too; the one beside the config file wins."""
    (elsewhere / ".env").write_text("TICKETMAIL_RELAY_PASSWORD=from-cwd\n", encoding="utf-8")
    assert load_config(config_path, environ={}).relay.password == "from-cwd"
    (config_path.parent / ".env").write_text("TICKETMAIL_RELAY_PASSWORD=beside\n", encoding="utf-8")
    assert load_config(config_path, environ={}).relay.password == "beside"


def test_environment_beats_dotenv(config_path: Path, elsewhere: Path) -> None:
    """A password set in the environment wins over the one in .env."""
    (config_path.parent / ".env").write_text(
        "TICKETMAIL_RELAY_PASSWORD=from-dotenv\n", encoding="utf-8"
    )
    config = load_config(config_path, environ={"TICKETMAIL_RELAY_PASSWORD": SECRET})
    assert config.relay.password == SECRET


def test_check_config_masks_password_from_environment(config_path: Path) -> None:
    """check-config prints the effective config, exit 0, the password masked (text and JSON)."""
    env = {"TICKETMAIL_RELAY_PASSWORD": SECRET}
    text = run_cli("check-config", "--config", str(config_path), env=env)
    assert text.returncode == 0, text.stderr
    assert SECRET not in text.stdout + text.stderr
    assert 'password = "********"' in text.stdout
    assert "[relay]" in text.stdout
    as_json = run_cli("check-config", "--config", str(config_path), "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    assert SECRET not in as_json.stdout + as_json.stderr
    assert json.loads(as_json.stdout)["config"]["relay"]["password"] == "********"


def test_check_config_masks_password_from_dotenv(config_path: Path, elsewhere: Path) -> None:
    """A password read from .env beside the config is set, and masked by check-config."""
    (config_path.parent / ".env").write_text(
        f'TICKETMAIL_RELAY_PASSWORD="{SECRET}"\n', encoding="utf-8"
    )
    result = run_cli("check-config", "--config", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert json.loads(result.stdout)["config"]["relay"]["password"] == "********"


def test_check_config_says_when_no_password_is_set(config_path: Path, elsewhere: Path) -> None:
    """Without a password check-config says so instead of showing the mask."""
    result = run_cli("check-config", "--config", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["relay"]["password"] == "(not set)"


# --- templates and data dir ---------------------------------------------------------------------


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A private copy of the shipped templates, to break."""
    from ticketmail.config import default_templates_dir

    target = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), target)
    return target


def test_check_config_accepts_a_good_templates_dir(tmp_path: Path, templates: Path) -> None:
    """templates.dir pointing to a complete, valid copy passes check-config."""
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, templates={"dir": str(templates)}
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("ok")


BROKEN_TEMPLATES = {
    "syntax-error": "Subject: {{ tag }\n\nbody\n",
    "unclosed-block": "Subject: {{ tag }}\n\n{% if name %}hello\n",
    "no-subject-line": "Hallo {{ name }},\n\nbody\n",
    "undefined-variable": "Subject: {{ tag }}\n\n{{ no_such_variable }}\n",
}


@pytest.mark.parametrize("case", BROKEN_TEMPLATES, ids=list(BROKEN_TEMPLATES))
def test_check_config_refuses_a_broken_template(tmp_path: Path, templates: Path, case: str) -> None:
    """A template that does not render to 'Subject: …' + body: exit 2, one line naming it."""
    broken = templates / "en" / "no_contract.txt.j2"
    broken.write_text(BROKEN_TEMPLATES[case], encoding="utf-8")
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, templates={"dir": str(templates)}
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(path) in line
    assert "templates.dir" in line
    assert str(broken) in line


def test_check_config_refuses_a_missing_template(tmp_path: Path, templates: Path) -> None:
    """A template file missing from templates.dir: exit 2, one line naming it."""
    missing = templates / "de" / "ticket_created.txt.j2"
    missing.unlink()
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, templates={"dir": str(templates)}
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(missing) in line
    assert "not found" in line


def test_check_config_refuses_a_missing_templates_dir(tmp_path: Path) -> None:
    """templates.dir naming no directory: exit 2, one line naming the file, key and directory."""
    nowhere = tmp_path / "no-templates"
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, templates={"dir": str(nowhere)}
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(path) in line
    assert "templates.dir" in line
    assert str(nowhere) in line


def test_check_config_refuses_an_unusable_data_dir(tmp_path: Path) -> None:
    """storage.data_dir that cannot be a directory: exit 2, one line naming file and key."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    path = write_config(tmp_path / "config.toml", blocker, None)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(path) in line
    assert "storage.data_dir" in line


# --- validation never fails any other way -------------------------------------------------------

_SETTINGS = {
    "smtp": (
        "host",
        "port",
        "recipients",
        "max_message_bytes",
        "timeout_seconds",
        "bogus",
        "shutdown_grace_seconds",
    ),
    "relay": ("transport", "security", "port", "max_age_hours", "password", "username"),
    "tickets": ("subject_tag", "first_number", "reopen_days", "acknowledge_followups"),
    "log": ("level", "format"),
}
_SAFE_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=12)
_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    _SAFE_TEXT,
    st.sampled_from(["smtp", "tls", "none", "debug", "json", "a@b.example", "Ticket"]),
    st.lists(_SAFE_TEXT, max_size=3),
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chosen=st.dictionaries(
        st.sampled_from(list(_SETTINGS)),
        st.dictionaries(st.sampled_from(range(7)), _VALUES, max_size=4),
        max_size=3,
    )
)
def test_any_settings_load_or_fail_with_config_error(
    tmp_path: Path, chosen: dict[str, dict[int, Any]]
) -> None:
    """Whatever values a file holds, loading gives a Config or a ConfigError naming the file."""
    lines: list[str] = []
    for section, values in chosen.items():
        keys = _SETTINGS[section]
        lines.append(f"[{section}]")
        lines += [f"{keys[i % len(keys)]} = {_toml_value(v)}" for i, v in values.items()]
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        config: Config | None = load_config(path, environ={})
        error = ""
    except ConfigError as exc:
        config, error = None, str(exc)
    if config is None:
        assert error.startswith(f"{path}: ")
        assert "\n" not in error
    else:
        assert config.source == str(path)
        assert config.relay.password == ""
