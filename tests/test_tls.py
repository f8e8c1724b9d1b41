"""STARTTLS: offered with a configured certificate, mail accepted over it; bad files refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest
import trustme
from conftest import SUPPORT, Env, make_mail, run_cli, write_config


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_files(ca: trustme.CA, where: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("ticketmail.test", "127.0.0.1")
    cert_file, key_file = where / "cert.pem", where / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    return cert_file, key_file


async def test_starttls_offered_and_mail_accepted_over_it(
    env_factory: object, ca: trustme.CA, tmp_path: Path
) -> None:
    """With a certificate EHLO offers STARTTLS, and a mail sent over TLS opens a ticket."""
    cert, key = server_files(ca, tmp_path)
    e: Env = await env_factory(  # type: ignore[operator]
        None, smtp={"tls_cert_file": str(cert), "tls_key_file": str(key)}
    )
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=e.port, start_tls=False, tls_context=client_context
    )
    await client.connect()
    try:
        await client.ehlo()
        assert "starttls" in client.esmtp_extensions
        await client.starttls()
        assert client.get_transport_info("ssl_object") is not None
        await client.ehlo()
        assert "starttls" not in client.esmtp_extensions
        await client.mail("anna@schule.example")
        await client.rcpt(SUPPORT)
        response = await client.data(make_mail("anna@schule.example", "Über TLS").as_bytes())
        assert (response.code, response.message) == (250, "2.0.0 Ok: ticket 100001")
    finally:
        await client.quit()


def test_missing_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    """A TLS file that does not exist stops check-config with exit 2 and one line naming the key."""
    config = write_config(
        tmp_path / "config.toml",
        tmp_path / "var",
        None,
        smtp={"tls_cert_file": str(tmp_path / "nope.pem"), "tls_key_file": str(tmp_path / "k")},
    )
    result = run_cli("--config", str(config), "check-config")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "smtp.tls_cert_file" in result.stderr
    assert "Traceback" not in result.stderr


def test_certificate_without_key_is_a_configuration_error(tmp_path: Path) -> None:
    """Only one of the two TLS files set is refused, naming the missing key."""
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, smtp={"tls_cert_file": "/x.pem"}
    )
    result = run_cli("--config", str(config), "check-config")
    assert result.returncode == 2
    assert "smtp.tls_key_file" in result.stderr


async def test_starttls_of_the_last_free_session_is_not_refused(
    env_factory: object, ca: trustme.CA, tmp_path: Path
) -> None:
    """A session that takes the last place under smtp.max_sessions can still start TLS."""
    cert, key = server_files(ca, tmp_path)
    e: Env = await env_factory(  # type: ignore[operator]
        None, smtp={"tls_cert_file": str(cert), "tls_key_file": str(key), "max_sessions": 1}
    )
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=e.port, start_tls=False, tls_context=client_context
    )
    await client.connect()
    try:
        await client.ehlo()
        await client.starttls()
        assert (await client.ehlo()).code == 250
        assert (await client.noop()).code == 250
    finally:
        client.close()
