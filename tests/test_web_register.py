"""Reset links, registration mails and confirmations over real HTTP against the real daemon
(SPEC 8.2): a stranger can neither void a user's link, nor flood an address, nor put words
into a mail, nor have a registration with the stranger's password confirmed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, Sink
from web_support import (
    ANNA,
    PASSWORD,
    Client,
    give_password,
    link_in,
    logged_in,
    mails_to,
    next_mail_to,
    outbox_kinds,
)

from ticketmail.storage import accounts

pytestmark = pytest.mark.web  # the daemon serves the portal

DORA = "dora@schule.example"  # schule.example vouches for institution 10042
EVE = "eve@gmail.example"
STRANGERS = "stranger-password-1"
TYPED_NAME = "Mallory Visit http://evil.example/now"


def form(email: str, *, customer: str = "10042", password: str = PASSWORD) -> dict[str, str]:
    return {"email": email, "name": TYPED_NAME, "customer_number": customer,
            "password": password, "language": "en"}  # fmt: skip


async def register(client: Client, email: str, **kwargs: Any) -> None:
    response = await client.post("/register", form(email, **kwargs), form_page="/register")
    assert response.status_code == 200, response.text


async def forgot(client: Client, email: str) -> None:
    response = await client.post("/password/forgot", {"email": email}, form_page="/password/forgot")
    assert response.status_code == 200


async def store_read(env: Env, fn: Any, *args: Any) -> Any:
    assert env.daemon.store is not None
    return await env.daemon.store.write(lambda conn: fn(conn, *args))


def count(table: str, email: str) -> Any:
    def read(conn: Any) -> int:
        sql = f"SELECT COUNT(*) FROM {table} WHERE email = ?"  # noqa: S608 - a test's own name
        return int(conn.execute(sql, (email,)).fetchone()[0])

    return read


async def domains(env: Env) -> None:
    assert env.daemon.store is not None
    await env.daemon.store.write(
        lambda conn: accounts.set_domains(conn, "10042", ("schule.example",))
    )


# --- reset links ----------------------------------------------------------------------------


async def test_a_users_reset_link_survives_requests_made_by_others(env: Env) -> None:
    """A link mailed to the user stays valid however many links others ask for; at most 3
    such mails reach the address an hour (beyond that the same page, no mail)."""
    sink = env.sink
    assert sink is not None
    await forgot(Client(env), ANNA)
    first = link_in(await next_mail_to(sink, ANNA, after=0))
    for i in range(6):
        await forgot(Client(env, source=f"127.0.0.{20 + i}"), ANNA)
    await register(Client(env, source="127.0.0.30"), ANNA)  # a registration asks for one too
    await next_mail_to(sink, ANNA, after=2)
    assert [k for k, r in await outbox_kinds(env) if r == ANNA] == ["password_reset"] * 3
    client = Client(env)
    assert (await client.get(first)).status_code == 200
    assert (await client.post(first, {"password": "mein-neues-passwort"})).status_code == 200
    assert (await Client(env).login(ANNA, "mein-neues-passwort")).status_code == 303
    env.clock.advance(minutes=61)
    await forgot(Client(env), ANNA)
    await next_mail_to(sink, ANNA, after=3)  # a new hour, a new mail


async def test_a_password_change_voids_every_reset_link(env: Env) -> None:
    """Changing the password on /account voids every reset link mailed before."""
    sink = env.sink
    assert sink is not None
    client = await logged_in(env, ANNA)
    await forgot(Client(env), ANNA)
    await forgot(Client(env), ANNA)
    links = [link_in(await next_mail_to(sink, ANNA, after=i)) for i in range(2)]
    other = Client(env)
    assert [(await other.get(link)).status_code for link in links] == [200, 200]
    await client.get("/account")
    changed = await client.post(
        "/account", {"current_password": PASSWORD, "password": "ein-anderes-passwort"}
    )
    assert changed.status_code == 200
    assert [(await other.get(link)).status_code for link in links] == [404, 404]


@pytest.fixture
async def mail_env(env_factory: Any, sink: Sink) -> Env:
    e: Env = await env_factory(sink, web={"ip_mail_requests": 4})
    await e.customer("10042", "Gymnasium Musterstadt")
    return e


async def test_one_source_gets_at_most_its_mails_an_hour(mail_env: Env) -> None:
    """web.ip_mail_requests requests an hour from one source, over any addresses, are
    answered with mail; beyond that the same page and no mail; another source still gets
    its mail."""
    env = mail_env
    sink = env.sink
    assert sink is not None
    flooder = Client(env, source="127.0.0.2")
    for i in range(6):
        await register(flooder, f"person{i}@gmail.example")
    await register(Client(env, source="127.0.0.3"), "late@gmail.example")
    await next_mail_to(sink, "late@gmail.example", after=0)
    assert sorted(r for _, r in await outbox_kinds(env)) == [
        "late@gmail.example",
        *(f"person{i}@gmail.example" for i in range(4)),
    ]


# --- registration ---------------------------------------------------------------------------


async def test_a_registration_mail_carries_nothing_the_visitor_typed(env: Env) -> None:
    """Confirmation, unknown-number note and reset link sent from /register carry nothing
    the visitor typed but the address: not the name, not the customer number."""
    sink = env.sink
    assert sink is not None
    client = Client(env)
    await register(client, EVE)
    await register(client, "zoe@elsewhere.example", customer="99999-evil.example")
    await register(client, ANNA)
    mails = [await next_mail_to(sink, a, after=0)
             for a in (EVE, "zoe@elsewhere.example", ANNA)]  # fmt: skip
    kinds = [link_in(m).split("/")[1:3] for m in mails]
    assert kinds == [["register", "confirm"], ["register"], ["password", "reset"]]
    for mail in mails:
        raw = mail.raw.decode("utf-8", "replace")
        for typed in ("Mallory", "evil.example", "99999", "10042"):
            assert typed not in raw
            assert typed not in mail.message.get_content()


async def test_a_confirmation_needs_the_registrations_own_password(env: Env) -> None:
    """A stranger registers a teacher's address at a vouched domain: the teacher's POST to
    that link without the stranger's password changes nothing (and counts as a failed
    login); her own registration's link, with her password, makes her account."""
    sink = env.sink
    assert sink is not None
    await domains(env)
    await register(Client(env, source="127.0.0.2"), DORA, password=STRANGERS)
    strangers_link = link_in(await next_mail_to(sink, DORA, after=0))
    await register(Client(env), DORA)  # the teacher's own, with her password
    own_link = link_in(await next_mail_to(sink, DORA, after=1))

    dora = Client(env)
    assert 'name="password"' in (await dora.get(strangers_link)).text
    assert (await dora.post(strangers_link, {})).status_code == 401
    assert (await dora.post(strangers_link, {"password": PASSWORD})).status_code == 401
    assert await store_read(env, accounts.identity_of, DORA) is None
    assert (await dora.get(strangers_link)).status_code == 200  # still valid, nothing done

    await dora.get(own_link)
    assert (await dora.post(own_link, {"password": PASSWORD})).status_code == 200
    me = await store_read(env, accounts.identity_of, DORA)
    assert me is not None
    assert not me.pending
    assert (await dora.get(strangers_link)).status_code == 404  # the address is an account
    assert (await Client(env).login(DORA, STRANGERS)).status_code == 401
    assert (await Client(env).login(DORA)).status_code == 303


async def test_wrong_confirmation_passwords_count_as_failed_logins(env: Env) -> None:
    """Five wrong passwords on a confirmation page lock it like five failed logins: the
    right one is refused too until the lock ends."""
    sink = env.sink
    assert sink is not None
    await register(Client(env), EVE)
    link = link_in(await next_mail_to(sink, EVE, after=0))
    client = Client(env)
    await client.get(link)
    answers = [(await client.post(link, {"password": STRANGERS})).status_code for _ in range(5)]
    assert answers == [401] * 5
    assert (await client.post(link, {"password": PASSWORD})).status_code == 429
    assert not await store_read(env, accounts.is_pending, EVE)
    env.clock.advance(minutes=16)
    assert (await client.post(link, {"password": PASSWORD})).status_code == 200
    assert await store_read(env, accounts.is_pending, EVE)


async def test_a_stale_confirmation_never_touches_an_existing_account(env: Env) -> None:
    """A confirmation link whose address became a user meanwhile (`user add`) is void: the
    user's password and account stay as they were."""
    sink = env.sink
    assert sink is not None
    await register(Client(env), EVE, password=STRANGERS)
    link = link_in(await next_mail_to(sink, EVE, after=0))
    await env.user(EVE, "10042", name="Eve Echt", lang="de")
    await give_password(env, EVE)
    client = Client(env)
    assert (await client.get(link)).status_code == 404
    stale = await client.post(link, {"password": STRANGERS}, form_page="/login")
    assert stale.status_code == 404
    assert (await Client(env).login(EVE, STRANGERS)).status_code == 401
    assert (await Client(env).login(EVE)).status_code == 303
    me = await store_read(env, accounts.identity_of, EVE)
    assert me is not None
    assert me.name == "Eve Echt"


async def test_several_confirmation_links_are_valid_each_for_its_registration(env: Env) -> None:
    """Two registrations of one address: both links are valid; the first confirmed makes the
    other void (a confirmation never changes an account)."""
    sink = env.sink
    assert sink is not None
    await register(Client(env), EVE, password=STRANGERS)
    await register(Client(env), EVE)
    links = [link_in(await next_mail_to(sink, EVE, after=i)) for i in range(2)]
    client = Client(env)
    assert [(await client.get(link)).status_code for link in links] == [200, 200]
    assert (await client.post(links[1], {"password": PASSWORD})).status_code == 200
    assert (await client.get(links[0])).status_code == 404
    void = await client.post(links[0], {"password": STRANGERS}, form_page="/login")
    assert void.status_code == 404
    assert (await Client(env).login(EVE)).status_code == 303
    assert (await Client(env).login(EVE, STRANGERS)).status_code == 401


# --- the same work either way ---------------------------------------------------------------


async def test_forgot_does_the_same_writes_for_an_unknown_address(env: Env) -> None:
    """/password/forgot stores a request and a token for an unknown address as for a known
    one (and composes the mail), so that it takes the same time; only the known gets mail."""
    sink = env.sink
    assert sink is not None
    nobody = "nobody@schule.example"
    client = Client(env)
    for address in (ANNA, nobody):
        await forgot(client, address)
    await next_mail_to(sink, ANNA, after=0)
    for address in (ANNA, nobody):
        assert await store_read(env, count("web_tokens", address)) == 1
        assert await store_read(env, count("mail_requests", address)) == 1
    assert mails_to(sink, nobody) == []
    assert [r for _, r in await outbox_kinds(env)] == [ANNA]


def test_no_mail_template_of_an_unconfirmed_address_prints_typed_fields() -> None:
    """The templates of mails to addresses not yet confirmed use no field a visitor types
    (name, customer number)."""
    root = Path(__file__).resolve().parent.parent / "templates"
    for lang in ("de", "en"):
        for name in ("account_confirm", "unknown_customer"):
            text = (root / lang / f"{name}.txt.j2").read_text(encoding="utf-8")
            assert not re.search(r"{{-?\s*(name|customer_number|customer)\b", text), (lang, name)
