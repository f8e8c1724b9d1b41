"""The desk's text modules over real HTTP against the real daemon (SPEC 9.1): list, add, edit
and delete them, per language, only the four placeholders, filled into a ticket's answer form
by `?text=` without evaluating anything; customers get 404, a POST without token 403."""

from __future__ import annotations

import html
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import Env, make_mail
from desk_schema import undo_schema_8
from desk_support import cli_stdin
from web_support import ANNA, BEN, PASSWORD, Client, logged_in, text_of

from ticketmail.storage import texts as texts_db
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.paths import DB_NAME
from ticketmail.storage.store import Store
from ticketmail.storage.texts import TextModule

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

MAX = "max@stueber.de"  # an agent reading the desk in English
MIA = "mia@stueber.de"  # one reading it in German
NOBODY = "nils@schule.example"  # a user without a language of their own
FOUR = (
    "Hallo {{ requester.name }},\nzu Ticket {{ticket.number}} ({{  ticket.subject }}):\n"
    "erledigt.\n{{ agent.name }}"
)
SUBJECT = "Drucker <b>druckt</b> & {{ agent.name }}"
REFUSED = (  # (in a module's body, what its refusal names)
    ("{{ ''.__class__ }}", "{{ ''.__class__ }}"),
    ("{{ config }}", "{{ config }}"),
    ("{% for i in range(1000000) %}x{% endfor %}", "{% for i in range(1000000) %}, {% endfor %}"),
    ("{{ requester.name|upper }}", "{{ requester.name|upper }}"),
    ("{# x #}", "{# x #}"),
    ("{{{ requester.name }}", "{{{ requester.name }}"),
    ("{{- agent.name }}", "{{- agent.name }}"),
    ("Hallo {{ requester.name", "{{ requester.name\nDanke"),
)


async def desk_env(env_factory, sink) -> Env:  # type: ignore[no-untyped-def]
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await env.user(BEN, "10042", name="Ben Meyer", lang="en")
    await env.user(NOBODY, "10042", name="Nils Ohne")
    for email, name, lang in ((MAX, "Max Berger", "en"), (MIA, "Mia Hahn", "de")):
        result = await env.cli("agent", "add", email, "--name", name, "--lang", lang)
        assert result.returncode == 0, result.stderr
        result = await cli_stdin(env, PASSWORD + "\n", "agent", "passwd", email)
        assert result.returncode == 0, result.stderr
    return env


async def agent(env: Env, email: str = MAX) -> Client:
    client = Client(env, lang="en")
    response = await client.login(email)
    assert response.status_code == 303, response.text
    await client.get("/desk/texts")  # the token of the desk's pages
    return client


async def ticket(env: Env, sender: str, subject: str, number: int) -> None:
    mail = make_mail(sender, subject)
    assert await env.send(mail) == (250, f"2.0.0 Ok: ticket {number}")


async def stored(env: Env) -> tuple[TextModule, ...]:
    assert env.daemon.store is not None
    return await env.daemon.store.write(texts_db.list_texts)


async def add(client: Client, title: str, body: str, lang: str = "de") -> int:
    response = await client.post("/desk/texts", {"title": title, "lang": lang, "body": body})
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/desk/texts\?done=added#text-(\d+)", response.headers["location"])
    assert found is not None, response.headers["location"]
    return int(found.group(1))


def field(response: object, control: str) -> str:
    """The text of a page's textarea as the browser gets it (entities decoded)."""
    page = getattr(response, "text", "")
    found = re.search(f'<textarea id="{control}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found is not None, page
    return html.unescape(found.group(1))


def answer_field(response: object) -> str:
    return field(response, "reply-body")


def offered(response: object) -> list[str]:
    page = getattr(response, "text", "")
    found = re.search(r'<select id="text-choice" name="text">(.*?)</select>', page, re.S)
    return re.findall(r">([^<]*)</option>", found.group(1)) if found else []


async def test_the_four_placeholders_are_filled_in_on_the_ticket_page(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """?text= puts the module into the answer field with the requester's name, the number,
    the subject and the agent's name, escaped; a value's own braces are never filled in."""
    env = await desk_env(env_factory, sink)
    await ticket(env, f"Anna Müller <{ANNA}>", SUBJECT, 100001)
    max_ = await agent(env)
    module = await add(max_, "Erledigt", FOUR)
    plain = await max_.get("/desk/tickets/100001")
    assert answer_field(plain) == ""
    assert offered(plain) == ["Erledigt"]
    filled = await max_.get(f"/desk/tickets/100001?text={module}")
    assert filled.status_code == 200
    assert answer_field(filled) == (
        f"Hallo Anna Müller,\nzu Ticket 100001 ({SUBJECT}):\nerledigt.\nMax Berger"
    )
    assert "Drucker &lt;b&gt;druckt&lt;/b&gt; &amp; {{ agent.name }}" in filled.text
    assert "<b>druckt</b>" not in filled.text
    mia = await agent(env, MIA)  # the agent's own name, whoever wrote the module
    assert answer_field(await mia.get(f"/desk/tickets/100001?text={module}")).endswith("Mia Hahn")


async def test_anything_else_in_braces_is_refused_and_nothing_stored(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A module with anything but the four placeholders between {{ }}, {% %} or {# #} is
    refused when added or edited: one line names it, the typed text stays, nothing is stored."""
    env = await desk_env(env_factory, sink)
    max_ = await agent(env)
    module = await add(max_, "Gut", "Hallo {{ requester.name }}")
    for bad, named in REFUSED:
        body = f"Guten Tag,\n{bad}\nDanke"
        response = await max_.post("/desk/texts", {"title": "Böse", "lang": "de", "body": body})
        assert response.status_code == 400, bad
        line = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
        assert line is not None, bad
        assert html.unescape(line.group(1)).startswith(f"Not allowed: {named}. "), bad
        assert field(response, "new-body") == body  # the typed text kept
        edited = await max_.post(f"/desk/texts/{module}",
                                 {"title": "Gut", "lang": "de", "body": body})  # fmt: skip
        assert edited.status_code == 400, bad
        assert field(edited, f"text-{module}-body") == body
    assert [(m.title, m.body) for m in await stored(env)] == [("Gut", "Hallo {{ requester.name }}")]


async def test_add_edit_delete_answer_with_a_line_in_the_pages_language(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Adding, editing and deleting a module work and each says so in the agent's language;
    empty fields, an unknown language and a body over 20,000 characters come back with the
    typed text and one line."""
    env = await desk_env(env_factory, sink)
    mia = await agent(env, MIA)
    module = await add(mia, "Gruß", "Viele Grüße\n{{ agent.name }}")
    page = await mia.get("/desk/texts?done=added")
    assert "Der Textbaustein wurde angelegt." in page.text
    assert '<a href="/desk/texts">Textbausteine</a>' in page.text  # in the navigation
    saved = await mia.post(f"/desk/texts/{module}",
                           {"title": "Greeting", "lang": "en", "body": "Kind regards"})  # fmt: skip
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/desk/texts?done=saved#text-{module}"
    assert "Der Textbaustein wurde gespeichert." in (await mia.get(saved.headers["location"])).text
    too_long = await mia.post("/desk/texts", {"title": "T", "lang": "de", "body": "x" * 20_001})
    assert "Der Text ist länger als 20.000 Zeichen. Nichts wurde gespeichert." in too_long.text
    (changed,) = await stored(env)
    assert (changed.title, changed.lang, changed.body) == ("Greeting", "en", "Kind regards")
    assert (changed.created_by, changed.updated_by) == (MIA, MIA)
    max_ = await agent(env)
    assert "The text module was added." in (await max_.get("/desk/texts?done=added")).text
    longest = "x" * 20_000
    for fields, line, code in (
        ({"title": " ", "lang": "de", "body": "Text"}, "Please fill in this field.", 400),
        ({"title": "T", "lang": "de", "body": " \t "}, "Please fill in this field.", 400),
        ({"title": "T", "lang": "fr", "body": "Texte"}, "Please choose German or English.", 400),
        ({"title": "T", "lang": "de", "body": longest + "y"}, "longer than 20,000", 413),
    ):
        refused = await max_.post("/desk/texts", fields)
        assert refused.status_code == code, fields
        assert line in text_of(refused)
        assert field(refused, "new-body") == fields["body"]
        assert "The text module was added." not in refused.text
    assert len(await stored(env)) == 1
    await add(max_, "Longest", longest)
    deleted = await max_.post(f"/desk/texts/{module}/delete")
    assert deleted.status_code == 303
    assert "The text module was deleted." in (await max_.get(deleted.headers["location"])).text
    assert [m.title for m in await stored(env)] == ["Longest"]
    assert (await max_.post(f"/desk/texts/{module}/delete")).status_code == 404


async def test_a_tickets_answer_form_offers_the_modules_of_its_language(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A German requester's ticket offers the German modules only, an English one's the
    English ones, one without a language those of templates.default_language (de)."""
    env = await desk_env(env_factory, sink)
    await ticket(env, f"Anna Müller <{ANNA}>", "Drucker", 100001)
    await ticket(env, f"Ben Meyer <{BEN}>", "Printer", 100002)
    await ticket(env, f"Nils Ohne <{NOBODY}>", "Beamer", 100003)
    max_ = await agent(env)
    await add(max_, "Abschluss", "Das Ticket ist erledigt.", "de")
    await add(max_, "Begrüßung", "Guten Tag {{ requester.name }},", "de")
    english = await add(max_, "Closing", "The ticket is done.", "en")
    assert offered(await max_.get("/desk/tickets/100001")) == ["Abschluss", "Begrüßung"]
    assert offered(await max_.get("/desk/tickets/100002")) == ["Closing"]
    assert offered(await max_.get("/desk/tickets/100003")) == ["Abschluss", "Begrüßung"]
    filled = await max_.get(f"/desk/tickets/100002?text={english}")
    assert answer_field(filled) == "The ticket is done."


async def test_customers_get_404_and_a_post_without_token_403(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Every /desk/texts path is 404 for a customer (GET and POST); an agent's POST without
    csrf_token is 403 and changes nothing (the add form keeps its text)."""
    env = await desk_env(env_factory, sink)
    max_ = await agent(env)
    module = await add(max_, "Gruß", "Viele Grüße")
    anna = await logged_in(env, ANNA)
    assert (await anna.get("/desk/texts")).status_code == 404
    for path in ("/desk/texts", f"/desk/texts/{module}", f"/desk/texts/{module}/delete"):
        fields = {"title": "Kaputt", "lang": "de", "body": "x"}
        assert (await anna.post(path, fields)).status_code == 404, path
    anonymous = Client(env)
    assert (await anonymous.get("/desk/texts")).status_code == 303  # to the login
    forms = (
        ("/desk/texts", "new-body"),
        (f"/desk/texts/{module}", f"text-{module}-body"),
        (f"/desk/texts/{module}/delete", ""),
    )
    for path, control in forms:
        fields = {"title": "Ohne", "lang": "de", "body": "Ohne Token getippt"}
        refused = await max_.post(path, fields, csrf="")
        assert refused.status_code == 403, path
        if control:  # the form comes back with what was typed into it (SPEC 8.4)
            assert field(refused, control) == "Ohne Token getippt", path
    assert [(m.title, m.body) for m in await stored(env)] == [("Gruß", "Viele Grüße")]


async def test_numbers_out_of_range_are_404_and_a_missing_module_is_said(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A module path past the stored ones or past SQLite's integers is 404; ?text= of a
    missing module shows the ticket with an empty answer field and a line saying so."""
    env = await desk_env(env_factory, sink)
    await ticket(env, f"Anna Müller <{ANNA}>", "Drucker", 100001)
    max_ = await agent(env)
    fields = {"title": "T", "lang": "de", "body": "x"}
    for number in ("7", "9223372036854775807", "9223372036854775808", "1" + "0" * 40):
        assert (await max_.post(f"/desk/texts/{number}", fields)).status_code == 404, number
        assert (await max_.post(f"/desk/texts/{number}/delete")).status_code == 404, number
        page = await max_.get(f"/desk/tickets/100001?text={number}")
        assert page.status_code == 200, number
        assert "There is no such text module (any more)." in page.text
        assert answer_field(page) == ""
    assert (await max_.get("/desk/tickets/100001?text=-1")).status_code == 200
    assert await stored(env) == ()


@pytest.mark.sqlite_only
async def test_a_version_before_the_text_modules_gets_them(tmp_path: Path) -> None:
    """A database of the version before text modules is migrated to SCHEMA_VERSION with an
    empty table of them. (SQLite only: a migration of SQLite's schema; PostgreSQL has no
    migrations before version 13.)"""
    store = await Store.open(tmp_path)
    await store.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    with conn:
        undo_schema_8(conn)
    conn.close()
    store = await Store.open(tmp_path)
    try:
        assert await store.write(texts_db.list_texts) == ()
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
