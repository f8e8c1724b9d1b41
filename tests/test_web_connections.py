"""One client cannot take the web away (SPEC 8.4): the header timeout, the connection caps,
and client addresses from a trusted proxy only."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Env, eventually, write_config
from structlog.testing import capture_logs
from web_support import PASSWORD, Client

from ticketmail.config import load_config
from ticketmail.errors import ConfigError
from ticketmail.web.connections import ConnectionCaps, Trusted

pytestmark = pytest.mark.web  # the daemon serves the portal

PARTIAL = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the headers never end


@asynccontextmanager
async def silent(env: Env, source: str, count: int = 1) -> AsyncIterator[list[Any]]:
    """`count` connections from `source` that send part of a request's headers and no more."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", env.daemon.web_port, local_addr=(source, 0)
            )
            writer.write(PARTIAL)
            opened.append((reader, writer))
        yield opened
    finally:
        for _, writer in opened:
            writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """The daemon closed the connection (EOF or reset) within `seconds`, sending nothing."""
    try:
        data = await asyncio.wait_for(reader.read(1024), seconds)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    assert data == b"", f"the daemon answered: {data[:80]!r}"
    return True


def http_from(env: Env, source: str, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{env.daemon.web_port}",
        transport=httpx.AsyncHTTPTransport(local_address=source),
        headers=headers,
        timeout=httpx.Timeout(5.0),
    )


async def test_header_timeout_closes_a_silent_connection(env_factory: Any) -> None:
    """A connection whose request headers are not complete in web.header_timeout_seconds is
    closed; one whose headers came in time is served, however long its body then takes."""
    env: Env = await env_factory(None, web={"header_timeout_seconds": 1.0})
    with capture_logs() as events:
        async with silent(env, "127.0.0.5") as [(reader, _)]:
            started = time.monotonic()
            assert await closed_within(reader, 5.0), "a silent connection was kept open"
            took = time.monotonic() - started
    assert 0.8 < took < 3.0, f"closed after {took:.1f}s with a 1 s header timeout"
    closed = [e for e in events if e["event"] == "web_connection_closed"]
    assert [(e["reason"], e["peer"]) for e in closed] == [("header_timeout", "127.0.0.5")]

    # Headers complete at once, the body only after the header timeout: not cut.
    reader, writer = await asyncio.open_connection("127.0.0.1", env.daemon.web_port)
    try:
        writer.write(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        await asyncio.sleep(1.5)  # longer than the header timeout, on purpose
        writer.write(b"a=b&c")
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 "), status
    finally:
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed(env_factory: Any) -> None:
    """After a response, a kept-alive connection that sends nothing more is closed after the
    keep-alive time (5 s), before the header timeout (10 s) would."""
    env: Env = await env_factory(None)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.daemon.web_port)
    try:
        writer.write(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 "), head[:80]
        length = re.search(rb"(?i)content-length: (\d+)", head)
        assert length is not None, head
        await reader.readexactly(int(length.group(1)))
        started = time.monotonic()
        assert await closed_within(reader, 9.0), "an idle kept-alive connection stayed open"
        assert 4.0 < time.monotonic() - started < 8.0
    finally:
        writer.close()


async def test_per_source_cap_refuses_the_extra_connection_and_serves_others(
    env_factory: Any,
) -> None:
    """Over web.max_connections_per_ip a connection from that address is closed at once (and
    logged with the peer); another address is served meanwhile."""
    env: Env = await env_factory(None, web={"max_connections_per_ip": 3})
    with capture_logs() as events:
        async with silent(env, "127.0.0.6", 3) as held, silent(env, "127.0.0.6") as [extra]:
            assert await closed_within(extra[0], 2.0), "a 4th connection from one source"
            for reader, _ in held:
                assert not await closed_within(reader, 0.05), "a connection within the cap"
            async with http_from(env, "127.0.0.7") as other:
                assert (await other.get("/login")).status_code == 200
    refused = [e for e in events if e["event"] == "web_connection_refused"]
    assert [(e["reason"], e["peer"], e["count"]) for e in refused] == [
        ("per_source", "127.0.0.6", 1)
    ]


async def test_total_cap_refuses_connections_beyond_it(env_factory: Any) -> None:
    """Over web.max_connections in all a new connection is closed at once, whatever its source;
    once one ends there is room again."""
    env: Env = await env_factory(None, web={"max_connections": 4, "max_connections_per_ip": 2})
    async with silent(env, "127.0.0.8", 2), silent(env, "127.0.0.9", 1):
        async with http_from(env, "127.0.0.10") as other:
            assert (await other.get("/login")).status_code == 200  # the 4th, kept alive
            async with silent(env, "127.0.0.11") as [(reader, _)]:
                assert await closed_within(reader, 2.0), "a 5th connection with a cap of 4"
        # The kept-alive one ended: a 4th is served again (once the daemon saw it end).
        async with http_from(env, "127.0.0.11") as again:

            async def served() -> bool:
                try:
                    return (await again.get("/login")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(served, seconds=5, what="a connection once one ended")


async def test_a_trusted_proxy_counts_in_the_total_only(env_factory: Any) -> None:
    """A peer in web.forwarded_allow_ips speaks for many clients: the per-source cap is not
    applied to it, the total is."""
    env: Env = await env_factory(
        None,
        web={
            "max_connections": 6,
            "max_connections_per_ip": 2,
            "forwarded_allow_ips": ["127.0.0.12"],
        },
    )
    async with silent(env, "127.0.0.12", 5) as held:
        for reader, _ in held:
            assert not await closed_within(reader, 0.05), "the proxy's connection was refused"
        async with silent(env, "127.0.0.13", 2) as [_, (reader, _)]:
            assert await closed_within(reader, 2.0), "a 7th connection with a cap of 6"


async def _failed_login(env: Env, source: str, **headers: str) -> dict[str, Any]:
    """One failed login over HTTP from `source`; the daemon's log event of it."""
    client = Client(env)
    await client.close()
    client.http = http_from(env, source, **headers)
    try:
        with capture_logs() as events:
            response = await client.post(
                "/login", {"email": "anna@schule.example", "password": PASSWORD + "x"},
                form_page="/login",
            )  # fmt: skip
    finally:
        await client.close()
    assert response.status_code == 401, response.status_code
    (failed,) = [e for e in events if e["event"] == "web_login_failed"]
    return failed


async def test_client_address_comes_from_a_trusted_proxy_only(env_factory: Any) -> None:
    """X-Forwarded-For names the client only when the peer is in web.forwarded_allow_ips
    (default: loopback); from any other peer the peer is the client."""
    env: Env = await env_factory(None, web={"forwarded_allow_ips": ["127.0.0.1", "127.0.0.14"]})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user("anna@schule.example", "10042")
    via_proxy = await _failed_login(env, "127.0.0.14", **{"X-Forwarded-For": "198.51.100.7"})
    assert via_proxy["source"] == "198.51.100.7"
    spoofed = await _failed_login(env, "127.0.0.15", **{"X-Forwarded-For": "198.51.100.8"})
    assert spoofed["source"] == "127.0.0.15"


async def test_forwarded_host_is_never_used(env_factory: Any) -> None:
    """Even from a trusted proxy, X-Forwarded-Host (or Host) never makes a link or redirect."""
    env: Env = await env_factory(None)
    headers = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    async with http_from(env, "127.0.0.1", **headers) as proxy:
        for path in ("/", "/login", "/register"):
            response = await proxy.get(path, headers={"Host": "evil.example"})
            assert "evil.example" not in response.headers.get("location", ""), path
            assert "evil.example" not in response.text, path


def test_an_ipv6_client_is_one_source_per_64() -> None:
    """An IPv6 client has a /64 of addresses: the per-source cap counts the /64, so a new
    address per connection does not get round it; an IPv4-mapped address counts as IPv4."""
    caps = ConnectionCaps(total=100, per_source=2, proxies=Trusted(["127.0.0.1"]))
    assert caps.take("2001:db8:1:2::1") is None
    assert caps.take("2001:db8:1:2::ffff") is None
    assert caps.take("2001:db8:1:2:abcd::3") == "per_source"
    assert caps.take("2001:db8:1:3::1") is None  # another network
    assert caps.take("::ffff:192.0.2.1") is None
    assert caps.take("192.0.2.1") is None
    assert caps.take("192.0.2.1") == "per_source"
    caps.give_back("2001:db8:1:2::ffff")
    assert caps.take("2001:db8:1:2::7") is None


def test_forwarded_allow_ips_must_be_addresses_or_networks(tmp_path: Path) -> None:
    """A typo in web.forwarded_allow_ips is a config error, not a proxy trusted by name."""
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", None,
        web={"forwarded_allow_ips": ["127.0.0.1", "10.0.0.0/33"]},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"web.forwarded_allow_ips: '10.0.0.0/33'"):
        load_config(path, environ={})
