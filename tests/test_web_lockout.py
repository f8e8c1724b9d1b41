"""Login limits over real HTTP against the real daemon (SPEC 8.2): a stranger who lacks the
password cannot keep a user out (the device cookie), nor guess at speed (per address, per
day, per source), and a wrong current password on /account counts like a failed login."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Env, Sink
from starlette.requests import Request
from web_support import ANNA, BEN, PASSWORD, Client, give_password, link_in, next_mail_to

from ticketmail.storage import logins
from ticketmail.web.guard import DEVICE_COOKIE, device_cookie_name, source_of

pytestmark = pytest.mark.web  # the daemon serves the portal

WRONG = "falsches-passwort"
NEW_PASSWORD = "ein-ganz-neues-passwort"


def device_cookies(client: Client) -> dict[str, str]:
    return {k: v for k, v in client.http.cookies.items() if k.startswith(DEVICE_COOKIE)}


async def fail(client: Client, email: str, times: int) -> list[int]:
    return [(await client.login(email, WRONG)).status_code for _ in range(times)]


async def remembered(env: Env, email: str, *, source: str | None = None) -> Client:
    """A browser that logged in to `email` and logged out again: it keeps the device cookie."""
    client = Client(env, source=source)
    assert (await client.login(email)).status_code == 303
    assert (await client.post("/logout", {})).status_code == 303
    assert device_cookie_name(email) in device_cookies(client)
    return client


async def reset_by_mail(env: Env, email: str, password: str) -> None:
    """The user sets a new password through a link mailed to them, in a browser of its own."""
    sink = env.sink
    assert sink is not None
    before = len([r for r in sink.received if email in r.rcpt_tos])
    client = Client(env, source="127.0.0.9")
    await client.post("/password/forgot", {"email": email}, form_page="/password/forgot")
    link = link_in(await next_mail_to(sink, email, after=before))
    await client.get(link)
    assert (await client.post(link, {"password": password})).status_code == 200


async def test_strangers_lock_the_address_but_never_the_users_own_browser(env: Env) -> None:
    """Five failures from a stranger lock the address for strangers; the user's browser that
    logged in before (and logged out since) still gets in; its device cookie is no exemption
    for another address; a reset lifts every lock."""
    await give_password(env, ANNA)
    await give_password(env, BEN)
    anna = await remembered(env, ANNA)
    stranger = Client(env, source="127.0.0.3")
    assert await fail(stranger, ANNA, 5) == [401] * 5
    assert (await stranger.login(ANNA)).status_code == 429
    assert (await Client(env).login(ANNA)).status_code == 429  # any browser without a cookie
    assert (await anna.login(ANNA)).status_code == 303  # her own browser is not kept out
    await anna.post("/logout", {})

    assert await fail(stranger, BEN, 5) == [401] * 5
    assert (await anna.login(BEN)).status_code == 429  # Anna's cookie is not Ben's
    assert await fail(anna, ANNA, 5) == [401] * 5  # now her browser locks itself
    assert (await anna.login(ANNA)).status_code == 429

    await reset_by_mail(env, ANNA, NEW_PASSWORD)
    assert (await Client(env, source="127.0.0.4").login(ANNA, NEW_PASSWORD)).status_code == 303
    assert (await anna.login(ANNA, NEW_PASSWORD)).status_code == 303
    assert (await Client(env).login(BEN)).status_code == 429  # Ben's lock is Ben's


async def test_a_device_cookie_names_one_address_only(env: Env) -> None:
    """A valid device cookie of one address, presented under another's name, is no
    exemption: the signature covers the address."""
    await give_password(env, ANNA)
    await give_password(env, BEN)
    anna = await remembered(env, ANNA)
    await fail(Client(env, source="127.0.0.3"), BEN, 5)
    forged = Client(env)
    forged.http.cookies.set(device_cookie_name(BEN), device_cookies(anna)[device_cookie_name(ANNA)])
    assert (await forged.login(BEN)).status_code == 429
    honest = Client(env)
    honest.http.cookies.set(
        device_cookie_name(ANNA), device_cookies(anna)[device_cookie_name(ANNA)]
    )
    await fail(Client(env, source="127.0.0.3"), ANNA, 5)
    assert (await honest.login(ANNA)).status_code == 303  # the same value under its own name


async def test_a_browser_locked_by_its_own_failures_locks_only_itself(env: Env) -> None:
    """Five failures of a remembered browser lock that browser for 15 minutes; the user's
    other browser and browsers without a cookie still get in."""
    await give_password(env, ANNA)
    first = await remembered(env, ANNA)
    second = await remembered(env, ANNA)
    assert await fail(first, ANNA, 5) == [401] * 5
    assert (await first.login(ANNA)).status_code == 429
    assert (await second.login(ANNA)).status_code == 303
    assert (await Client(env).login(ANNA)).status_code == 303
    env.clock.advance(minutes=16)
    assert (await first.login(ANNA)).status_code == 303


async def test_the_device_cookie_is_kept_a_year_httponly_and_outlives_logout(env: Env) -> None:
    """After a login the browser gets a device cookie for a year, HttpOnly, SameSite=Lax,
    not Secure over http; logout does not remove it."""
    await give_password(env, ANNA)
    client = Client(env)
    response = await client.login(ANNA)
    cookie = next(v for k, v in response.headers.multi_items()
                  if k == "set-cookie" and v.startswith(device_cookie_name(ANNA)))  # fmt: skip
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "max-age=31536000" in attributes
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes
    out = await client.post("/logout", {})
    assert not [v for k, v in out.headers.multi_items()
                if k == "set-cookie" and v.startswith(DEVICE_COOKIE)]  # fmt: skip


async def test_the_device_cookie_key_is_in_the_database_and_rotated_by_deleting_it(
    env: Env,
) -> None:
    """The signing key is a row of the database (made at the first login); deleting the row
    makes every device cookie issued so far count for nothing."""
    await give_password(env, ANNA)
    anna = await remembered(env, ANNA)
    assert env.daemon.store is not None
    key = await env.daemon.store.write(lambda conn: logins.device_key(conn))
    assert key is not None
    assert len(key) == 32
    await env.daemon.store.write(
        lambda conn: conn.execute("DELETE FROM meta WHERE key = ?", (logins.DEVICE_KEY,))
    )
    await fail(Client(env, source="127.0.0.3"), ANNA, 5)
    assert (await anna.login(ANNA)).status_code == 429  # her old cookie is worthless now
    env.clock.advance(minutes=16)
    assert (await anna.login(ANNA)).status_code == 303
    newer = await env.daemon.store.write(lambda conn: logins.device_key(conn))
    assert newer is not None
    assert newer != key


@pytest.fixture
async def capped_env(env_factory: Any, sink: Sink) -> Env:
    e: Env = await env_factory(sink, web={"address_login_failures": 8})
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user(ANNA, "10042", name="Anna Müller", lang="de")
    return e


async def test_an_address_takes_at_most_its_daily_failures_from_strangers(
    capped_env: Env,
) -> None:
    """web.address_login_failures failures a day (slow enough never to lock for 15 minutes)
    stop strangers at the address for the rest of the 24 hours; the user's browser is not
    stopped."""
    env = capped_env
    await give_password(env, ANNA)
    anna = await remembered(env, ANNA)
    for round_ in range(2):
        stranger = Client(env, source=f"127.0.0.{10 + round_}")
        assert await fail(stranger, ANNA, 4) == [401] * 4
        env.clock.advance(minutes=16)
    refused = await Client(env, source="127.0.0.12").login(ANNA)
    assert refused.status_code == 429
    assert "heute" in refused.text  # not "in 15 minutes"
    env.clock.advance(hours=12)
    assert (await Client(env, source="127.0.0.12").login(ANNA)).status_code == 429
    assert (await anna.login(ANNA)).status_code == 303
    env.clock.advance(hours=12)
    assert (await Client(env, source="127.0.0.12").login(ANNA)).status_code == 303


async def test_one_source_is_stopped_after_its_failures_over_many_addresses(env: Env) -> None:
    """60 failures over 12 addresses from one source: it is stopped at web.ip_login_failures
    (50), although each address locks after five (a lock never lowers the source's count);
    another source is not stopped."""
    await give_password(env, ANNA)
    attacker = Client(env, source="127.0.0.2")
    answers = []
    for i in range(12):
        answers += await fail(attacker, f"guess{i}@schule.example", 5)
    assert answers.count(401) == 50
    assert answers[50:] == [429] * 10
    assert (await attacker.login(ANNA)).status_code == 429
    assert (await Client(env, source="127.0.0.5").login(ANNA)).status_code == 303


def _request(host: str) -> Request:
    return Request({"type": "http", "client": (host, 4711), "headers": []})


def test_a_source_is_an_ipv4_address_or_an_ipv6_64() -> None:
    """Sources are counted per IPv4 address and per IPv6 /64 (an IPv4-mapped address is
    its IPv4 address)."""
    assert source_of(_request("192.0.2.7")) == "192.0.2.7"
    assert source_of(_request("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert source_of(_request("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert source_of(_request("2001:db8:1:3::1")) == "2001:db8:1:3::/64"
    assert source_of(_request("::ffff:192.0.2.7")) == "192.0.2.7"


async def test_six_wrong_current_passwords_lock_that_browser(env: Env) -> None:
    """A wrong current_password on /account counts as a failed login of that browser: the
    sixth try is refused, the right one too, and so is that browser's next login; the
    user's other browser and strangers are not locked."""
    await give_password(env, ANNA)
    other = await remembered(env, ANNA)
    client = Client(env)
    assert (await client.login(ANNA)).status_code == 303
    await client.get("/account")
    answers = []
    for _ in range(6):
        wrong = {"current_password": WRONG, "password": NEW_PASSWORD}
        answers.append((await client.post("/account", wrong)).status_code)
    assert answers == [400] * 5 + [429]
    right = {"current_password": PASSWORD, "password": NEW_PASSWORD}
    assert (await client.post("/account", right)).status_code == 429
    await client.post("/logout", {})
    assert (await client.login(ANNA)).status_code == 429
    assert (await other.login(ANNA)).status_code == 303
    assert (await Client(env, source="127.0.0.6").login(ANNA)).status_code == 303
    env.clock.advance(minutes=16)
    assert (await client.login(ANNA)).status_code == 303
    await client.get("/account")
    assert (await client.post("/account", right)).status_code == 200
