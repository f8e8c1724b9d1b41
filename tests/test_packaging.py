"""What ships: the example config, the templates inside a wheel, the systemd unit."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, eventually_sync, free_port

from ticketmail.config import Config, load_config
from ticketmail.outbound.compose import LANGUAGES, TEMPLATE_NAMES


def test_example_config_is_the_built_in_defaults() -> None:
    """config.example.toml loads cleanly and states exactly the built-in defaults."""
    loaded = load_config(REPO / "config.example.toml", environ={})
    assert dataclasses.replace(loaded, source=Config().source) == Config()


def test_every_config_key_is_documented_with_a_comment() -> None:
    """Every key of every section appears in config.example.toml, each after a comment line."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    lines = text.splitlines()
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        value = getattr(Config(), section.name)
        for key in (f.name for f in dataclasses.fields(value) if not f.metadata.get("env_only")):
            assert key in data[section.name], f"{section.name}.{key} missing"
            index = next(
                i
                for i, line in enumerate(lines)
                if line.startswith(f"{key} =") and f"[{section.name}]" in "\n".join(lines[:i])
            )
            assert lines[index - 1].startswith("#"), f"{section.name}.{key} has no comment"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
        timeout=180,
        capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("ticketmail-*.whl")
    return built


def test_wheel_carries_every_template(wheel: Path) -> None:
    """A non-editable install finds its templates: the wheel holds every template in de and en."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for lang in LANGUAGES:
        for name in TEMPLATE_NAMES:
            assert f"ticketmail/templates/{lang}/{name}.txt.j2" in names


def test_installed_wheel_checks_config_and_serves(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as pip installs it, ticketmail finds its templates and `serve` starts and stops."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
    env["PYTHONPATH"] = str(site)
    # -P keeps the current directory (and so the repository) off sys.path.
    base = [sys.executable, "-P", "-m", "ticketmail"]
    check = subprocess.run(
        [*base, "check-config"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert str(site / "ticketmail" / "templates") in check.stdout

    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[smtp]\nport = {port}\n[web]\nport = {free_port()}\n[log]\nformat = "json"\n',
        encoding="utf-8",
    )  # the web on a free port too: 8080 may be taken on a developer's machine
    proc = subprocess.Popen(
        [*base, "--config", str(config), "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        greeting: list[bytes] = []

        def answered_or_gone() -> bool:
            if proc.poll() is not None:
                return True  # gone: the assertion below says it never greeted
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    greeting.append(conn.recv(100))
                    return True
            except OSError:
                return False

        eventually_sync(answered_or_gone, seconds=30, what="serve answering", every=0.1)
        assert greeting, "ticketmail serve did not greet on its port"
        assert greeting[0].startswith(b"220"), "ticketmail serve did not greet on its port"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "daemon_stopped" in err
    assert "Traceback" not in err


def test_systemd_unit_is_type_notify_and_runs_serve() -> None:
    """The shipped unit runs `ticketmail serve` as a notify service with its own user."""
    unit = (REPO / "systemd" / "ticketmail.service").read_text(encoding="utf-8")
    assert "Type=notify" in unit
    assert "ticketmail serve" in unit
    assert "User=ticketmail" in unit
    assert "Restart=on-failure" in unit
