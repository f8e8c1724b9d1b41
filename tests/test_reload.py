"""SIGHUP reloads the templates and the TLS certificate; a broken reload keeps the daemon up."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import trustme
from conftest import SUPPORT, eventually_sync, free_port, make_mail, run_cli, write_config

from ticketmail.config import default_templates_dir


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(100).startswith(b"220")
    except OSError:
        return False


def _issue(ca: trustme.CA, where: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))


def _starttls_ok(port: int, ca: trustme.CA) -> bool:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        try:
            smtp.starttls(context=context)
        except ssl.SSLCertVerificationError:
            return False
        return True


def test_sighup_reloads_certificate_and_templates(tmp_path: Path) -> None:
    """After SIGHUP new sessions get the new certificate and mails use the new templates."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    old_ca, new_ca = trustme.CA(), trustme.CA()
    _issue(old_ca, tmp_path)
    port = free_port()
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None,
        smtp={"port": port, "tls_cert_file": str(tmp_path / "cert.pem"),
              "tls_key_file": str(tmp_path / "key.pem")},
        templates={"dir": str(templates)},
    )  # fmt: skip
    for args in (
        ("customer", "add", "10042", "Gymnasium Musterstadt", "--support-until", "2099-12-31"),
        ("user", "add", "anna@schule.example", "--customer", "10042", "--lang", "en"),
    ):
        assert run_cli("--config", str(config), *args).returncode == 0
    log = tmp_path / "daemon.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ticketmail", "--config", str(config), "serve"],
            stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=tmp_path,
        )  # fmt: skip
    try:
        eventually_sync(lambda: _greets(port), seconds=30, what="daemon greeting")
        assert _starttls_ok(port, old_ca)
        assert not _starttls_ok(port, new_ca)

        # A broken template and a broken certificate: both refused, the daemon keeps running.
        (templates / "en" / "ticket_created.txt.j2").write_text("no subject line\n", "utf-8")
        (tmp_path / "cert.pem").write_text("not a certificate", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        eventually_sync(
            lambda: "tls_reload_failed" in log.read_text(), seconds=10, what="tls failure"
        )
        assert "templates_reload_failed" in log.read_text()
        assert proc.poll() is None
        assert _starttls_ok(port, old_ca)

        _issue(new_ca, tmp_path)
        (templates / "en" / "ticket_created.txt.j2").write_text(
            "Subject: {{ tag }} Received: {{ subject }}\n\nWe have it.\n", encoding="utf-8"
        )
        proc.send_signal(signal.SIGHUP)
        eventually_sync(lambda: "tls_reloaded" in log.read_text(), seconds=10, what="tls reload")
        assert "templates_reloaded" in log.read_text()
        assert _starttls_ok(port, new_ca)

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(make_mail("anna@schule.example", "Beamer"), to_addrs=[SUPPORT])
        sent = tmp_path / "var" / "sent"
        eventually_sync(lambda: any(sent.glob("*.eml")), seconds=10, what="confirmation")
        (mail,) = sent.glob("*.eml")
        assert b"Subject: [Ticket#100001] Received: Beamer" in mail.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()
