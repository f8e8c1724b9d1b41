"""The portal's accounts over real HTTP against the real daemon: registration, confirmation,
approval, passwords, logins, sessions and CSRF (SPEC 8.1, 8.2)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import Env, Sink, make_mail
from web_support import (
    ANNA,
    PASSWORD,
    Client,
    give_password,
    link_in,
    logged_in,
    mails_to,
    next_mail_to,
)

from ticketmail.storage import accounts

EVE = "eve@gmail.example"
DORA = "dora@schule.example"

pytestmark = pytest.mark.web  # the daemon serves the portal


async def domains(env: Env, customer: str, *names: str) -> None:
    assert env.daemon.store is not None
    await env.daemon.store.write(lambda conn: accounts.set_domains(conn, customer, names))


async def read(env: Env, fn: Any, *args: Any, **kwargs: Any) -> Any:
    assert env.daemon.store is not None
    return await env.daemon.store.write(lambda conn: fn(conn, *args, **kwargs))


def registration(email: str, customer: str = "10042", **changes: str) -> dict[str, str]:
    form = {"email": email, "name": "Eva Example", "customer_number": customer,
            "password": PASSWORD, "language": "en"}  # fmt: skip
    form.update(changes)
    return form


def without_tokens(page: str) -> str:
    return re.sub(r"[0-9a-f]{64}", "", page)


async def register(client: Client, form: dict[str, str]) -> str:
    response = await client.post("/register", form, form_page="/register")
    assert response.status_code == 200, response.text
    return without_tokens(response.text)


async def test_registration_outside_the_domains_stays_pending_until_approved(env: Env) -> None:
    """An address outside the institution's domains: the link confirms only by POST with the
    registration's password, the account is pending (sees only that, opens nothing, its mail
    is refused 550 5.7.1) until `user approve`."""
    sink = env.sink
    assert sink is not None
    await domains(env, "10042", "schule.example")
    client = Client(env)
    await register(client, registration(EVE))
    link = link_in(await next_mail_to(sink, EVE, after=0))
    assert link.startswith("/register/confirm/")

    shown = await client.get(link)
    assert shown.status_code == 200
    assert 'method="post"' in shown.text
    assert not await read(env, accounts.is_pending, EVE)  # GET changed nothing
    assert (await Client(env).login(EVE)).status_code == 401

    confirmed = await client.post(link, {"password": PASSWORD})
    assert confirmed.status_code == 200
    assert await read(env, accounts.is_pending, EVE)
    again = await client.post(link, {"password": PASSWORD}, form_page="/login")
    assert again.status_code == 404  # single use

    eve = Client(env)
    assert (await eve.login(EVE)).status_code == 303
    for path in ("/tickets", "/tickets/new", "/account"):
        page = await eve.get(path)
        assert page.status_code == 403
        assert 'id="pending"' in page.text
    refused = await eve.post("/tickets/new", {"subject": "Hilfe", "body": "Bitte"})
    assert refused.status_code == 403
    assert await env.cli_json("ticket", "list") == []

    code, reply = await env.send(make_mail(EVE, "Drucker"))
    assert code == 550
    assert reply.startswith("5.7.1")
    assert "approval" in reply

    result = await env.cli("user", "approve", EVE)
    assert result.returncode == 0, result.stderr
    assert (await eve.get("/tickets")).status_code == 200
    code, reply = await env.send(make_mail(EVE, "Drucker"))
    assert code == 250, reply


async def test_registration_inside_the_domains_is_active_once_confirmed(env: Env) -> None:
    """An address in one of the institution's domains is a user once the link is POSTed
    with the registration's password."""
    sink = env.sink
    assert sink is not None
    await domains(env, "10042", "schule.example")
    client = Client(env)
    await register(client, registration(DORA))
    link = link_in(await next_mail_to(sink, DORA, after=0))
    assert (await client.get(link)).status_code == 200
    assert await read(env, accounts.identity_of, DORA) is None
    confirmed = await client.post(link, {"password": PASSWORD})
    assert confirmed.status_code == 200
    me = await read(env, accounts.identity_of, DORA)
    assert me is not None
    assert not me.pending
    assert me.customer.number == "10042"
    dora = Client(env)
    assert (await dora.login(DORA)).status_code == 303
    assert (await dora.get("/tickets")).status_code == 200


async def test_registration_page_is_the_same_for_every_input(env: Env) -> None:
    """A new address, a registered one and an unknown customer number get the same page; the
    registered address gets a password link, the unknown number a fixed note (without the
    number typed)."""
    sink = env.sink
    assert sink is not None
    client = Client(env)
    pages = {
        await register(client, registration(DORA)),
        await register(client, registration(ANNA)),
        await register(client, registration("zoe@elsewhere.example", customer="99999")),
    }
    assert len(pages) == 1
    anna = await next_mail_to(sink, ANNA, after=0)
    assert link_in(anna).startswith("/password/reset/")
    zoe = await next_mail_to(sink, "zoe@elsewhere.example", after=0)
    assert "99999" not in zoe.message["Subject"]
    assert "99999" not in zoe.message.get_content()
    assert "unknown customer number" in zoe.message["Subject"]
    assert "/register" in link_in(zoe)
    assert link_in(await next_mail_to(sink, DORA, after=0)).startswith("/register/confirm/")
    assert (await Client(env).login(ANNA)).status_code == 401  # nothing changed for Anna


async def test_registration_with_a_bad_password_says_why(env: Env) -> None:
    """A password under 10 characters, or the address itself, is refused with a message."""
    client = Client(env)
    short = await client.post("/register", registration(DORA, password="kurz"),
                              form_page="/register")  # fmt: skip
    assert short.status_code == 400
    assert 'id="password-error"' in short.text
    same = await client.post("/register", registration(DORA, password=DORA))
    assert same.status_code == 400
    assert await read(env, accounts.account_exists, DORA) is None


async def test_forgot_password_links_are_single_use_expire_and_using_one_voids_all(
    env: Env,
) -> None:
    """A user from `user add` sets a password through /password/forgot; a newer link leaves
    the older valid, each works once, using one voids the others, links expire, and a reset
    ends the user's other sessions."""
    sink = env.sink
    assert sink is not None
    client = Client(env)
    assert (await client.login(ANNA)).status_code == 401  # no password yet
    await client.post("/password/forgot", {"email": ANNA}, form_page="/password/forgot")
    first = link_in(await next_mail_to(sink, ANNA, after=0))
    await client.post("/password/forgot", {"email": ANNA}, form_page="/password/forgot")
    second = link_in(await next_mail_to(sink, ANNA, after=1))
    assert first != second
    assert (await client.get(first)).status_code == 200  # not voided by the newer one

    shown = await client.get(second)
    assert shown.status_code == 200
    done = await client.post(second, {"password": PASSWORD})
    assert done.status_code == 200
    assert (await client.post(second, {"password": "noch-ein-passwort"})).status_code == 404
    assert (await client.get(first)).status_code == 404  # using one voided the other
    assert (await Client(env).login(ANNA)).status_code == 303

    other = await logged_in(env, ANNA)  # another session of Anna's
    assert (await other.get("/tickets")).status_code == 200
    await client.post("/password/forgot", {"email": ANNA}, form_page="/password/forgot")
    third = link_in(await next_mail_to(sink, ANNA, after=2))
    env.clock.advance(hours=3)
    assert (await client.get(third)).status_code == 404  # expired
    env.clock.advance(hours=-3)
    await client.get(third)
    assert (await client.post(third, {"password": "ganz-neues-passwort"})).status_code == 200
    assert (await other.get("/tickets")).status_code == 303  # that session has ended


async def test_forgot_password_for_an_unknown_address_sends_nothing(env: Env) -> None:
    """/password/forgot shows the same page for an unknown address and mails nothing."""
    sink = env.sink
    assert sink is not None
    client = Client(env)
    known = await client.post("/password/forgot", {"email": ANNA}, form_page="/password/forgot")
    unknown = await client.post("/password/forgot", {"email": "nobody@x.example"},
                                form_page="/password/forgot")  # fmt: skip
    assert without_tokens(known.text) == without_tokens(unknown.text)
    await next_mail_to(sink, ANNA, after=0)
    assert mails_to(sink, "nobody@x.example") == []


async def test_post_without_csrf_token_is_refused_and_changes_nothing(env: Env) -> None:
    """A POST without a valid csrf_token answers 403 and changes nothing."""
    client = await logged_in(env, ANNA)
    for token in ("", "0" * 64):
        refused = await client.post("/tickets/new", {"subject": "S", "body": "B"}, csrf=token)
        assert refused.status_code == 403
        refused = await client.post("/register", registration(DORA), csrf=token)
        assert refused.status_code == 403
        refused = await client.post("/logout", {}, csrf=token)
        assert refused.status_code == 403
    assert await env.cli_json("ticket", "list") == []
    assert await read(env, accounts.account_exists, DORA) is None
    assert (await client.get("/tickets")).status_code == 200  # still logged in
    stranger = Client(env)  # a token from another visitor's page does not fit
    await stranger.get("/login")
    assert (await client.post("/logout", {}, csrf=stranger.csrf)).status_code == 403


async def test_five_failed_logins_lock_the_address_for_15_minutes(env: Env) -> None:
    """Five failures within 15 minutes from browsers without the address's device cookie
    lock the address for such browsers (even the right password fails), for 15 minutes; a
    password reset lifts the lock."""
    await give_password(env, ANNA)
    client = Client(env)
    for _ in range(5):
        assert (await client.login(ANNA, "falsches-passwort")).status_code == 401
    locked = await client.login(ANNA)
    assert locked.status_code == 429
    env.clock.advance(minutes=16)
    assert (await Client(env).login(ANNA)).status_code == 303
    for _ in range(5):
        await client.login(ANNA, "falsches-passwort")
    assert (await client.login(ANNA)).status_code == 429
    await give_password(env, ANNA, "ein-neues-passwort")  # a reset lifts the lock
    assert (await Client(env).login(ANNA, "ein-neues-passwort")).status_code == 303


@pytest.fixture
async def strict_env(env_factory: Any, sink: Sink) -> Env:
    e: Env = await env_factory(sink, web={"ip_login_failures": 8})
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user(ANNA, "10042", name="Anna Müller", lang="de")
    return e


async def test_one_ip_address_is_limited_across_addresses(strict_env: Env) -> None:
    """web.ip_login_failures failures from one IP, over many addresses, stop its logins from
    browsers without a device cookie."""
    env = strict_env
    await give_password(env, ANNA)
    client = Client(env)
    for i in range(8):
        assert (await client.login(f"guess{i}@schule.example", "falsch-falsch")).status_code == 401
    assert (await client.login(ANNA)).status_code == 429
    env.clock.advance(minutes=16)
    assert (await client.login(ANNA)).status_code == 303


async def test_session_cookie_is_httponly_and_lax_and_ends_at_logout(env: Env) -> None:
    """The session cookie is HttpOnly and SameSite=Lax (not Secure over http); logout ends it."""
    await give_password(env, ANNA)
    client = Client(env)
    response = await client.login(ANNA)
    cookie = next(v for k, v in response.headers.multi_items()
                  if k == "set-cookie" and v.startswith("tm_session="))  # fmt: skip
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()
    session = cookie.split(";")[0].split("=", 1)[1]
    assert len(session) >= 43  # 256 bits, base64
    assert (await client.post("/logout", {})).status_code == 303
    replay = Client(env)
    replay.http.cookies.set("tm_session", session)
    assert (await replay.get("/tickets")).status_code == 303


async def test_session_cookie_is_secure_when_base_url_is_https(env_factory: Any) -> None:
    """With an https base_url every cookie of the portal is Secure."""
    env: Env = await env_factory(None, web={"base_url": "https://support.example"})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042")
    await give_password(env, ANNA)
    client = Client(env)
    response = await client.login(ANNA)
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert cookies
    assert all("secure" in c.lower() for c in cookies)


async def test_session_ends_after_idle_hours(env: Env) -> None:
    """A session unused for web.session_idle_hours is over."""
    client = await logged_in(env, ANNA)
    env.clock.advance(hours=11)
    assert (await client.get("/tickets")).status_code == 200
    env.clock.advance(hours=11)
    assert (await client.get("/tickets")).status_code == 200  # used 11 h ago: still alive
    env.clock.advance(hours=13)
    assert (await client.get("/tickets")).status_code == 303


async def test_password_change_ends_the_other_sessions(env: Env) -> None:
    """Changing the password on /account keeps this session and ends the others."""
    first = await logged_in(env, ANNA)
    second = Client(env)
    assert (await second.login(ANNA)).status_code == 303
    await first.get("/account")
    wrong = await first.post(
        "/account", {"current_password": "nicht-richtig", "password": "x" * 12}
    )
    assert wrong.status_code == 400
    changed = await first.post(
        "/account", {"current_password": PASSWORD, "password": "ein-anderes-passwort"}
    )
    assert changed.status_code == 200
    assert (await first.get("/tickets")).status_code == 200
    assert (await second.get("/tickets")).status_code == 303


async def test_account_page_changes_name_and_language(env: Env) -> None:
    """Name and language saved on /account; the pages follow the language."""
    client = await logged_in(env, ANNA)
    await client.get("/account")
    saved = await client.post("/account", {"name": "Anna M.", "language": "en"})
    assert saved.status_code == 303
    page = await client.get("/tickets")
    assert '<html lang="en">' in page.text
    assert 'value="Anna M."' in (await client.get("/account")).text


async def test_refused_sender_is_pointed_at_the_portal(env: Env) -> None:
    """With the portal on, an unregistered sender's 550 names <web.base_url>/register."""
    code, reply = await env.send(make_mail("stranger@elsewhere.example", "Hallo"))
    assert code == 550
    assert "http://127.0.0.1:8080/register" in reply
