"""The portal's tickets over real HTTP against the real daemon: new tickets with files, the
list, the ticket page, downloads, replies by SPEC 4.4, close and reopen, hostile content,
institutions without contract, upload limits (SPEC 8.1, 8.3)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from conftest import SUPPORT, Env, make_mail
from web_support import (
    ANNA,
    BEN,
    Client,
    blob_count,
    link_in,
    logged_in,
    mails_to,
    next_mail_to,
    png,
    text_of,
)

from ticketmail.storage.store import CustomerRow

SECURITY = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

pytestmark = pytest.mark.web  # the daemon serves the portal


async def open_ticket(
    client: Client, subject: str, body: str, files: list[tuple[str, bytes, str]] | None = None
) -> int:
    response = await client.post(
        "/tickets/new",
        {"subject": subject, "body": body},
        files=[("attachments", f) for f in files or []],
        form_page="/tickets/new",
    )
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/tickets/(\d+)", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


def listed(page: Any) -> list[int]:
    """The ticket numbers a list page shows, in order."""
    found = re.findall(r'<td data-label="[^"]+"><a href="/tickets/(\d+)"', page.text)
    return [int(n) for n in dict.fromkeys(found)]


async def show(env: Env, number: int) -> Any:
    return await env.cli_json("ticket", "show", str(number))


async def test_web_ticket_with_files_is_numbered_stored_and_confirmed_like_mail(env: Env) -> None:
    """A web ticket takes the next mail number, keeps its files (name, type, size, SHA-256),
    gets the ticket_created mail, and an answer to that mail lands on the ticket."""
    sink = env.sink
    assert sink is not None
    code, reply = await env.send(make_mail(BEN, "Beamer flackert"))
    assert (code, reply) == (250, "2.0.0 Ok: ticket 100001")
    await next_mail_to(sink, BEN, after=0)
    client = await logged_in(env, ANNA)
    shot, notes = png(seed=7), b"Fehler ab 10 Uhr\n"
    number = await open_ticket(client, "Drucker druckt nicht", "Seit heute früh.",
                               [("bildschirm.png", shot, "image/png"),
                                ("notizen.txt", notes, "text/plain")])  # fmt: skip
    assert number == 100002
    ticket = await show(env, number)
    assert ticket["requester"] == ANNA
    assert ticket["status"] == "new"
    files = ticket["articles"][0]["attachments"]
    assert [(f["filename"], f["content_type"], f["size"], f["sha256"]) for f in files] == [
        ("bildschirm.png", "image/png", len(shot), hashlib.sha256(shot).hexdigest()),
        ("notizen.txt", "text/plain", len(notes), hashlib.sha256(notes).hexdigest()),
    ]
    confirmation = await next_mail_to(sink, ANNA, after=0)
    message = confirmation.message
    assert "[Ticket#100002]" in message["Subject"]
    assert message["Auto-Submitted"] == "auto-replied"
    assert link_in(confirmation) == "/tickets/100002"

    answer = make_mail(ANNA, "Re: " + str(message["Subject"]), "Noch ein Hinweis.\n",
                       headers={"In-Reply-To": str(message["Message-ID"])})  # fmt: skip
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100002")
    ticket = await show(env, number)
    assert [a["from"] for a in ticket["articles"]] == [ANNA, ANNA]
    page = await client.get(f"/tickets/{number}")
    assert "Noch ein Hinweis." in page.text


async def test_ticket_list_shows_the_institution_with_filters_search_mine_and_pages(
    env: Env,
) -> None:
    """/tickets lists every ticket of the institution (mail or web, anyone's), newest
    activity first; status, q, mine=1 and page narrow it."""
    for i in range(27):
        assert (await env.send(make_mail(BEN, f"Frage {i:02d}", f"Text {i} zur Sache\n")))[0] == 250
    client = await logged_in(env, ANNA)
    mine = await open_ticket(client, "Eigener Fall", "Das Wort Zebrastreifen steht hier.")
    page1 = await client.get("/tickets")
    assert page1.status_code == 200
    numbers = listed(page1)
    assert len(numbers) == 25
    assert numbers[0] == mine  # newest activity first
    page2 = await client.get("/tickets?page=2")
    numbers2 = listed(page2)
    assert len(numbers2) == 3
    assert set(numbers) | set(numbers2) == set(range(100001, 100029))
    searched = await client.get("/tickets", params={"q": "zebrastreifen"})
    assert f"/tickets/{mine}" in searched.text
    assert "Frage 03" not in searched.text
    by_subject = await client.get("/tickets", params={"q": "Frage 03"})
    assert "Frage 03" in by_subject.text
    assert "Frage 04" not in by_subject.text
    # A search is counted and paged like the list: 27 matches, 25 and then 2.
    found1 = await client.get("/tickets", params={"q": "zur Sache"})
    assert "27 Tickets" in found1.text
    found2 = await client.get("/tickets", params={"q": "zur Sache", "page": "2"})
    assert "27 Tickets" in found2.text
    assert listed(found1) == list(range(100027, 100002, -1))  # newest activity first
    assert set(listed(found1)) | set(listed(found2)) == set(range(100001, 100028))
    beyond = await client.get("/tickets", params={"q": "zur Sache", "page": "9"})
    assert beyond.status_code == 200
    assert listed(beyond) == []
    only_mine = await client.get("/tickets", params={"mine": "1"})
    assert f"/tickets/{mine}" in only_mine.text
    assert "Frage" not in text_of(only_mine)
    await client.post(f"/tickets/{mine}/close", {}, form_page=f"/tickets/{mine}")
    closed = await client.get("/tickets", params={"status": "closed"})
    assert f"/tickets/{mine}" in closed.text
    assert "Frage" not in text_of(closed)
    new = await client.get("/tickets", params={"status": "new"})
    assert mine not in listed(new)
    assert "Frage 26" in new.text


async def test_ticket_page_shows_articles_with_files_and_downloads_byte_for_byte(env: Env) -> None:
    """The ticket page shows each customer-visible article with its files; a file downloads
    byte for byte as an attachment with its name; automatic articles stay hidden."""
    mail = make_mail(BEN, "Mit Anhang", "Siehe Datei.\n")
    data = bytes(range(256)) * 40
    mail.add_attachment(data, maintype="application", subtype="pdf", filename="Bericht März.pdf")
    mail.add_attachment(png(seed=3), maintype="image", subtype="png", filename="shot.png")
    assert (await env.send(mail))[0] == 250
    result = await env.cli("ticket", "status", "100001", "answered", "--note", "INTERN-NOTIZ")
    assert result.returncode == 0, result.stderr
    client = await logged_in(env, ANNA)
    page = await client.get("/tickets/100001")
    assert page.status_code == 200
    assert "Siehe Datei." in page.text
    assert "Bericht März.pdf" in page.text
    assert "INTERN-NOTIZ" not in page.text  # the automatic status notice is not shown
    links = re.findall(r'href="(/tickets/100001/files/\d+)" download>([^<]+)<', page.text)
    assert [name for _, name in links] == ["Bericht März.pdf", "shot.png"]
    assert re.search(r'<img src="/tickets/100001/files/\d+" alt="shot.png"', page.text)
    pdf = await client.get(links[0][0])
    assert pdf.status_code == 200
    assert pdf.content == data
    assert pdf.headers["content-type"] == "application/octet-stream"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''Bericht%20M%C3%A4rz.pdf" in pdf.headers["content-disposition"]
    image = await client.get(links[1][0])
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline;")  # a click opens it
    assert image.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/tickets/100001/files/99999")).status_code == 404
    assert (await client.get("/tickets/999999")).status_code == 404


async def test_web_reply_follows_the_mail_rules_close_and_reopen(env: Env) -> None:
    """A web reply reopens a ticket closed within tickets.reopen_days (ticket_reopened mail),
    opens a new ticket naming it after that; close and reopen work."""
    sink = env.sink
    assert sink is not None
    client = await logged_in(env, ANNA)
    number = await open_ticket(client, "WLAN", "Kein Netz im Raum 12.")
    await next_mail_to(sink, ANNA, after=0)
    closed = await client.post(f"/tickets/{number}/close", {}, form_page=f"/tickets/{number}")
    assert closed.status_code == 303
    assert (await show(env, number))["status"] == "closed"
    reopened = await client.post(f"/tickets/{number}/reopen", {}, form_page=f"/tickets/{number}")
    assert reopened.status_code == 303
    assert (await show(env, number))["status"] == "open"
    await client.post(f"/tickets/{number}/close", {}, form_page=f"/tickets/{number}")

    env.clock.advance(days=3)
    assert (await client.login(ANNA)).status_code == 303  # the session was idle too long
    reply = await client.post(f"/tickets/{number}/reply", {"body": "Geht wieder nicht."},
                              form_page=f"/tickets/{number}")  # fmt: skip
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/tickets/{number}"
    ticket = await show(env, number)
    assert ticket["status"] == "open"
    notice = await next_mail_to(sink, ANNA, after=1)
    assert f"[Ticket#{number}]" in notice.message["Subject"]
    outbox = await env.cli_json("outbox", "list")
    assert ("ticket_reopened", ANNA) in [(e["kind"], e["recipient"]) for e in outbox]
    await client.post(f"/tickets/{number}/close", {}, form_page=f"/tickets/{number}")
    env.clock.advance(days=env.config.tickets.reopen_days + 1)
    assert (await client.login(ANNA)).status_code == 303
    late = await client.post(f"/tickets/{number}/reopen", {}, form_page=f"/tickets/{number}")
    assert late.status_code == 409
    assert (await show(env, number))["status"] == "closed"
    follow = await client.post(f"/tickets/{number}/reply", {"body": "Immer noch."},
                               form_page=f"/tickets/{number}")  # fmt: skip
    assert follow.status_code == 303
    new_number = int(follow.headers["location"].rsplit("/", 1)[1])
    assert new_number != number
    new = await show(env, new_number)
    assert new["previous_ticket"] == str(number)
    assert (await show(env, number))["status"] == "closed"


async def test_answered_ticket_goes_back_to_open_on_a_web_reply(env: Env) -> None:
    """A web reply on an answered ticket makes it open again, as a mail reply does."""
    client = await logged_in(env, ANNA)
    number = await open_ticket(client, "Passwort", "Vergessen.")
    assert (await env.cli("ticket", "status", str(number), "answered")).returncode == 0
    await client.post(f"/tickets/{number}/reply", {"body": "Danke, noch eine Frage."},
                      form_page=f"/tickets/{number}")  # fmt: skip
    assert (await show(env, number))["status"] == "open"


def hostile_mail() -> EmailMessage:
    msg = make_mail(
        BEN,
        'Hallo <script>alert("subject")</script>',
        'Text <script>alert("body")</script> und <a href="javascript:alert(1)">klick</a> '
        "javascript:alert(2) <img src=x onerror=alert(3)>\nhttps://example.org/ok?a=1&b=<2>\n",
    )
    msg.add_alternative(
        '<html><body><script>alert("html")</script><b onmouseover="alert(4)">fett</b>'
        '<a href="javascript:alert(5)">link</a></body></html>',
        subtype="html",
    )
    msg.add_attachment(b"<html><script>alert(6)</script></html>", maintype="text",
                       subtype="html", filename="<img src=x onerror=alert(7)>.html")  # fmt: skip
    msg.add_attachment(
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(8)</script></svg>',
        maintype="image", subtype="svg+xml", filename="bild.svg",
    )  # fmt: skip
    return msg


async def test_hostile_mail_content_never_renders_as_markup(env: Env) -> None:
    """Script tags, javascript: links, HTML-only bodies, markup in file names and SVG with
    script: all escaped or download-only; the security headers are on every response."""
    assert (await env.send(hostile_mail()))[0] == 250
    html_only = make_mail(BEN, "Nur HTML")
    html_only.set_content('<p>Hallo<script>alert("only")</script></p>', subtype="html")
    assert (await env.send(html_only))[0] == 250
    client = await logged_in(env, ANNA)
    responses = []
    for path in ("/tickets/100001", "/tickets/100002", "/tickets", "/tickets?q=%3Cscript%3E"):
        page = await client.get(path)
        assert page.status_code == 200
        responses.append(page)
        # Only the portal's own scripts, each a file under /static, never one from a mail.
        own = re.sub(r'<script src="/static/[a-z]+\.js" defer></script>', "", page.text)
        assert "<script" not in own.lower()
        assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", page.text, re.I)
        assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", page.text, re.IGNORECASE)
    page = responses[0]
    assert "&lt;script&gt;" in page.text
    assert (
        'href="https://example.org/ok?a=1&amp;b=" rel="noopener noreferrer nofollow"' in page.text
    )
    assert re.search(r'href="javascript', page.text, re.IGNORECASE) is None
    links = re.findall(r'href="(/tickets/100001/files/\d+)" download>([^<]+)<', page.text)
    files = {name: url for url, name in links}
    assert "&lt;img src=x onerror=alert(7)&gt;.html" in files
    assert "bild.svg" in files
    assert not re.search(r'<img src="[^"]+" alt="bild.svg"', page.text)  # SVG never inline
    for url in files.values():
        download = await client.get(url)
        assert download.headers["content-type"] == "application/octet-stream"
        assert download.headers["content-disposition"].startswith("attachment;")
        responses.append(download)
    responses.append(await client.get("/tickets/424242"))
    responses.append(await client.get("/static/portal.css"))
    responses.append(await Client(env).get("/tickets"))
    responses.append(await client.get("/login"))
    for response in responses:
        for name, value in SECURITY.items():
            assert response.headers[name] == value, (response.url, name)


async def test_institution_without_contract_reads_but_sees_the_offer(env: Env) -> None:
    """Without contract or trial: tickets can be read; instead of the forms the offer
    address; a POST opens nothing."""
    client = await logged_in(env, ANNA)
    number = await open_ticket(client, "Vorher", "Als der Vertrag noch lief.")
    assert env.daemon.store is not None
    expired = env.clock().date() - timedelta(days=1)
    await env.daemon.store.add_customers(
        [CustomerRow("10042", "Gymnasium Musterstadt", expired, None)], now=env.clock()
    )
    page = await client.get(f"/tickets/{number}")
    assert page.status_code == 200
    assert "Als der Vertrag noch lief." in page.text
    assert 'id="offer"' in page.text
    assert "office@stueber.de" in page.text
    assert f'action="/tickets/{number}/reply"' not in page.text
    new = await client.get("/tickets/new")
    assert 'id="offer"' in new.text
    assert 'action="/tickets/new"' not in new.text
    refused = await client.post("/tickets/new", {"subject": "Neu", "body": "Bitte"})
    assert refused.status_code == 403
    refused = await client.post(f"/tickets/{number}/reply", {"body": "Noch was"})
    assert refused.status_code == 403
    assert [t["number"] for t in await env.cli_json("ticket", "list")] == [str(number)]
    assert len((await show(env, number))["articles"]) == 1


async def test_lapsed_contract_cannot_close_or_reopen(env: Env) -> None:
    """Under a lapsed contract close and reopen are 403 with the offer; nothing changes."""
    client = await logged_in(env, ANNA)
    open_one = await open_ticket(client, "Offen", "Bleibt offen.")
    closed_one = await open_ticket(client, "Zu", "Wird geschlossen.")
    await client.get(f"/tickets/{closed_one}")
    assert (await client.post(f"/tickets/{closed_one}/close", {})).status_code == 303
    assert env.daemon.store is not None
    expired = env.clock().date() - timedelta(days=1)
    await env.daemon.store.add_customers(
        [CustomerRow("10042", "Gymnasium Musterstadt", expired, None)], now=env.clock()
    )
    before = [await show(env, n) for n in (open_one, closed_one)]
    for path in (f"/tickets/{open_one}/close", f"/tickets/{closed_one}/reopen"):
        await client.get(path.rsplit("/", 1)[0])
        refused = await client.post(path, {})
        assert refused.status_code == 403, path
        assert 'id="offer"' in refused.text
        assert "office@stueber.de" in refused.text
    assert [await show(env, n) for n in (open_one, closed_one)] == before
    assert [s["status"] for s in before] == ["new", "closed"]


async def test_uploads_over_the_limits_get_a_message_and_store_nothing(env_factory: Any) -> None:
    """More than smtp.max_message_bytes in all, or more than 20 files: a clear message in
    the page, no ticket, no article, no blob."""
    env: Env = await env_factory(None, smtp={"max_message_bytes": 200_000})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="en")
    client = await logged_in(env, ANNA, lang="en")
    number = await open_ticket(client, "Erstes", "Ohne Dateien.")
    before = blob_count(env)
    cases = [
        [("big.bin", b"x" * 150_000, "application/octet-stream"),
         ("big2.bin", b"y" * 100_000, "application/octet-stream")],
        [(f"f{i}.txt", b"kurz %d" % i, "text/plain") for i in range(21)],
        [("huge.bin", b"z" * 1_500_000, "application/octet-stream")],
    ]  # fmt: skip
    for files in cases:
        for path in ("/tickets/new", f"/tickets/{number}/reply"):
            response = await client.post(
                path, {"subject": "Zu viel", "body": "Text"},
                files=[("attachments", f) for f in files], form_page="/tickets/new",
            )  # fmt: skip
            assert response.status_code == 413, (path, response.status_code)
            assert 'class="error"' in response.text
            assert "Nothing was saved" in response.text
    assert blob_count(env) == before
    tickets = await env.cli_json("ticket", "list")
    assert [t["number"] for t in tickets] == [str(number)]
    assert tickets[0]["articles"] == 1
    assert mails_to(env.sink, ANNA) == [] if env.sink else True
    ok = await client.post(f"/tickets/{number}/reply", {"body": "Zwanzig"},
                           files=[("attachments", (f"f{i}.txt", b"%d" % i, "text/plain"))
                                  for i in range(20)],
                           form_page=f"/tickets/{number}")  # fmt: skip
    assert ok.status_code == 303
    assert len((await show(env, number))["articles"][1]["attachments"]) == 20


async def test_pages_follow_the_language(env: Env) -> None:
    """Before login Accept-Language chooses, ?lang= switches; after, the user's language."""
    anonymous = Client(env, lang="en-US,en;q=0.9")
    assert "Log in" in (await anonymous.get("/login")).text
    switched = await anonymous.get("/login?lang=de")
    assert "Anmelden" in switched.text
    assert "Anmelden" in (await anonymous.get("/login")).text  # remembered
    ben = await logged_in(env, BEN, lang="de")  # Ben's language is en
    assert "Tickets of Gymnasium Musterstadt" in text_of(await ben.get("/tickets"))


async def test_healthz_answers_ok(env: Env) -> None:
    """GET /healthz answers 200 ok while the store answers."""
    response = await Client(env).get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


async def test_support_address_is_the_article_recipient(env: Env) -> None:
    """A web article is addressed to the support address, as a mailed one is."""
    client = await logged_in(env, ANNA)
    number = await open_ticket(client, "Adresse", "Text")
    assert (await show(env, number))["articles"][0]["to"] == [SUPPORT]
