"""The relay over STARTTLS and implicit TLS with AUTH, against a real local SMTP server."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from conftest import Env, Sink, eventually, free_port, make_mail, run_cli, write_config

USER, SECRET = "ticketmail", "s3cret-relay-pw"

# The implicit-TLS sink cannot tell aiosmtpd that TLS is on, which makes it warn.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class TlsSink(Sink):
    """A sink that offers STARTTLS (or speaks TLS from the start) and requires AUTH."""

    def __init__(self, ca: trustme.CA, *, implicit: bool) -> None:
        super().__init__()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.implicit = implicit
        self.logins: list[tuple[bytes, bool]] = []

    def authenticate(self, server: SMTP, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:  # fmt: skip
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == USER.encode() and auth_data.password == SECRET.encode()
        self.logins.append((auth_data.login, ok))
        return AuthResult(success=ok, handled=False)

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(
                self,
                hostname="relay.test",
                decode_data=False,
                tls_context=None if self.implicit else self.context,
                require_starttls=not self.implicit,
                authenticator=self.authenticate,
                auth_required=True,
                # With implicit TLS aiosmtpd cannot see the TLS layer below it.
                auth_require_tls=not self.implicit,
            ),
            host="127.0.0.1",
            port=port,
            ssl=self.context if self.implicit else None,
        )
        self.port = self.server.sockets[0].getsockname()[1]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_relay_delivers_over_tls_with_auth_from_dotenv(
    env_factory: object, ca: trustme.CA, tmp_path: Path, security: str
) -> None:
    """Confirmations go through a TLS relay that requires AUTH; the password comes from .env."""
    sink = TlsSink(ca, implicit=security == "tls")
    await sink.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    (tmp_path / ".env").write_text(f"TICKETMAIL_RELAY_PASSWORD={SECRET}\n", encoding="utf-8")
    try:
        e: Env = await env_factory(  # type: ignore[operator]
            sink,
            relay={"security": security, "username": USER, "tls_ca_file": str(ca_file)},
        )
        await e.customer("10042", "Gymnasium Musterstadt")
        await e.user("anna@schule.example", "10042")
        code, _ = await e.send(make_mail("anna@schule.example", "Drucker"))
        assert code == 250
        (mail,) = await sink.wait_for(1)
        assert mail.rcpt_tos == ["anna@schule.example"]
        assert sink.logins == [(USER.encode(), True)]
    finally:
        await sink.stop()


async def test_relay_with_untrusted_certificate_is_retried_not_sent(
    env_factory: object, ca: trustme.CA, tmp_path: Path
) -> None:
    """A relay whose certificate is not trusted gets no mail; the entry waits with the error."""
    sink = TlsSink(ca, implicit=False)
    await sink.start()
    (tmp_path / ".env").write_text(f"TICKETMAIL_RELAY_PASSWORD={SECRET}\n", encoding="utf-8")
    try:
        e: Env = await env_factory(  # type: ignore[operator]
            sink, relay={"security": "starttls", "username": USER}
        )
        await e.customer("10042", "Gymnasium Musterstadt")
        await e.user("anna@schule.example", "10042")
        code, _ = await e.send(make_mail("anna@schule.example", "Drucker"))
        assert code == 250
        entries: list[dict[str, Any]] = []

        async def attempted() -> bool:
            entries[:] = await e.cli_json("outbox", "list")
            return bool(entries) and entries[0]["attempts"] >= 1

        await eventually(attempted, what=lambda: f"no attempt in the outbox: {entries}")
        assert entries[0]["status"] == "queued"
        assert "CERTIFICATE_VERIFY_FAILED" in entries[0]["last_error"].upper().replace(" ", "_")
        assert sink.received == []
        assert sink.logins == []
    finally:
        await sink.stop()


async def test_probe_relay_logs_in_or_names_the_failure(ca: trustme.CA, tmp_path: Path) -> None:
    """check-config --probe-relay says the relay answered and accepted the login, or why not."""
    sink = TlsSink(ca, implicit=False)
    await sink.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    relay = {"transport": "smtp", "security": "starttls", "username": USER,
             "tls_ca_file": str(ca_file)}  # fmt: skip
    try:
        config = write_config(tmp_path / "c.toml", tmp_path / "var", sink.port, relay=relay)
        good = await asyncio.to_thread(
            run_cli, "--config", str(config), "check-config", "--probe-relay",
            env={"TICKETMAIL_RELAY_PASSWORD": SECRET},
        )  # fmt: skip
        assert good.returncode == 0, good.stderr
        assert f"logged in as {USER}" in good.stdout
        assert SECRET not in good.stdout
        bad = await asyncio.to_thread(
            run_cli, "--config", str(config), "check-config", "--probe-relay",
            env={"TICKETMAIL_RELAY_PASSWORD": "wrong"},
        )  # fmt: skip
        assert bad.returncode == 1
        assert bad.stderr.count("\n") == 1
        assert "535" in bad.stderr
        # aiosmtplib tries each offered mechanism before it gives up.
        assert sink.logins[0] == (USER.encode(), True)
        assert len(sink.logins) >= 2
        assert not any(ok for _, ok in sink.logins[1:])
    finally:
        await sink.stop()
    down = write_config(tmp_path / "d.toml", tmp_path / "var", free_port())
    result = await asyncio.to_thread(run_cli, "--config", str(down), "check-config",
                                     "--probe-relay")  # fmt: skip
    assert result.returncode == 1
    assert "not usable" in result.stderr
