"""The kept page parts of the portal and the desk (render.py): made once, made anew when what
they show changes."""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import UTC, datetime, timedelta

import jinja2
import pytest

from ticketmail.config import WebConfig
from ticketmail.models import HistoryEntry
from ticketmail.storage.accounts import WebArticle, WebAttachment, WebTicket
from ticketmail.storage.desk import DeskArticle, DeskFile, DeskTicket
from ticketmail.web.i18n import translator
from ticketmail.web.render import page_environment
from ticketmail.web.server import WebServer

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
TICKET = WebTicket(100001, "Drucker", "open", "anna@schule.example", AT, AT, None)
ARTICLE = WebArticle(
    7, "in", "anna@schule.example", "Anna", AT, "Der Drucker <druckt> nicht.",
    "Der Drucker <druckt> nicht.", None,
    (WebAttachment(3, "foto.png", "image/png", 2048, "ab" * 32),),
)  # fmt: skip


@pytest.fixture
def env() -> jinja2.Environment:
    return page_environment(articles_kept=2, rows_kept=2)


def row(env: jinja2.Environment, ticket: WebTicket, lang: str = "de", *, now: datetime = AT) -> str:
    template = env.from_string("{{ ticket_row(ticket) }}")
    return template.render(lang=lang, t=translator(lang), ticket=ticket, now=now)


def article(env: jinja2.Environment, value: WebArticle, lang: str = "de") -> str:
    template = env.from_string("{{ article_html(ticket, article) }}")
    return template.render(lang=lang, t=translator(lang), ticket=TICKET, article=value)


def test_kept_row_is_made_anew_when_the_ticket_changes(env: jinja2.Environment) -> None:
    """A list row shows the ticket as read now: a kept row never hides a new status or subject."""
    first = row(env, TICKET)
    assert "status-open" in first
    assert row(env, TICKET) == first
    changed = row(env, dataclasses.replace(TICKET, subject="Drucker kaputt", status="closed"))
    assert "status-closed" in changed
    assert "Drucker kaputt" in changed
    assert "status-open" not in changed


def test_kept_row_is_made_anew_when_its_relative_time_reads_otherwise(
    env: jinja2.Environment,
) -> None:
    """A kept row never shows a stale 'vor 5 Minuten' once the clock reads later."""
    assert "vor 5 Minuten" in row(env, TICKET, now=AT + timedelta(minutes=5))
    later = row(env, TICKET, now=AT + timedelta(hours=2))
    assert "vor 2 Stunden" in later
    assert "vor 5 Minuten" not in later


def test_kept_parts_follow_the_language(env: jinja2.Environment) -> None:
    """The same ticket and article in German and in English: each page in its own language."""
    assert "in Bearbeitung" in row(env, TICKET, "de")
    assert "in progress" in row(env, TICKET, "en")
    assert "herunterladen" in article(env, ARTICLE, "de")
    assert "download" in article(env, ARTICLE, "en")
    assert "in Bearbeitung" in row(env, TICKET, "de")


def test_kept_article_is_escaped_and_made_anew_for_a_renamed_author(
    env: jinja2.Environment,
) -> None:
    """An article's text stays escaped, and an author's new name shows at once."""
    first = article(env, ARTICLE)
    assert "&lt;druckt&gt;" in first
    assert "<druckt>" not in first
    assert "/tickets/100001/files/3" in first
    assert article(env, ARTICLE) == first
    renamed = article(env, dataclasses.replace(ARTICLE, author_name="Anna Berg"))
    assert "Anna Berg" in renamed


def test_rows_beyond_the_kept_number_are_still_right(env: jinja2.Environment) -> None:
    """More tickets than rows kept: every row, made again after being dropped, shows its ticket."""
    tickets = [dataclasses.replace(TICKET, number=100001 + i, subject=f"Betreff {i}")
               for i in range(5)]  # fmt: skip
    for _ in range(2):
        for i, ticket in enumerate(tickets):
            made = row(env, ticket)
            assert f"Betreff {i}<" in made
            assert f"/tickets/{ticket.number}" in made


async def test_portal_connections_send_without_waiting_for_acks() -> None:
    """The portal's listening socket has TCP_NODELAY, which its connections inherit: a body
    never waits (Nagle) for the ACK of its headers."""
    server = WebServer(object(), WebConfig(host="127.0.0.1", port=0))
    try:
        listening = socket.socket(fileno=os.dup(server.fileno()))
        try:
            assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            listening.close()
    finally:
        await server.stop()


DESK_TICKET = DeskTicket(100001, "Drucker", "open", "10042", "Gymnasium", "anna@schule.example",
                         None, AT, AT)  # fmt: skip
DESK_ARTICLE = DeskArticle(
    7, "in", False, "anna@schule.example", ("support@stueber.de",), (), "Drucker", AT,
    "<a@x>", "", "Der Drucker <druckt> nicht.", "status new → open", True, ("taken",),
    (DeskFile(3, "foto.png", "image/png", 2048, "ab" * 32),),
)  # fmt: skip


def desk_article(env: jinja2.Environment, ticket: DeskTicket, value: DeskArticle,
                 lang: str = "de") -> str:  # fmt: skip
    template = env.from_string("{{ desk_article_html(ticket, article, note) }}")
    return template.render(lang=lang, t=translator(lang), ticket=ticket, article=value,
                           note=lambda note, t: f"[{note}]")  # fmt: skip


def change(env: jinja2.Environment, entry: HistoryEntry, lang: str = "de") -> str:
    template = env.from_string("{{ change_html(entry, local_text) }}")
    return template.render(lang=lang, t=translator(lang), entry=entry,
                           local_text=lambda moment: f"<{moment}>")  # fmt: skip


def test_kept_desk_article_follows_the_article_the_requester_and_the_language(
    env: jinja2.Environment,
) -> None:
    """A desk article is made once and kept, escaped; a changed article (a new file), a ticket
    taken for another requester and another language each show at once."""
    first = desk_article(env, DESK_TICKET, DESK_ARTICLE)
    assert "&lt;druckt&gt;" in first
    assert "<druckt>" not in first
    assert "[status new → open]" in first
    assert "/desk/tickets/100001/files/3" in first
    assert "anna@schule.example" in first
    assert desk_article(env, DESK_TICKET, DESK_ARTICLE) == first
    more = dataclasses.replace(
        DESK_ARTICLE,
        attachments=(
            *DESK_ARTICLE.attachments,
            DeskFile(4, "zwei.pdf", "application/pdf", 10, "cd" * 32),
        ),
    )
    assert "zwei.pdf" in desk_article(env, DESK_TICKET, more)
    other = dataclasses.replace(DESK_TICKET, requester="ben@schule.example")
    assert "ben@schule.example" in desk_article(env, other, DESK_ARTICLE)
    assert desk_article(env, DESK_TICKET, DESK_ARTICLE, "en") != first


def test_kept_history_lines_are_per_language_and_entry(env: jinja2.Environment) -> None:
    """A history line in the desk, kept per language and entry: each entry and each language
    shows its own words; the system is named as such."""
    entry = HistoryEntry(AT, "max@stueber.de", "status", "new", "open", 3)
    assert "neu → in Bearbeitung · max@stueber.de" in change(env, entry, "de")
    assert "new → in progress · max@stueber.de" in change(env, entry, "en")
    owner = HistoryEntry(AT, "system", "owner", None, "mia@stueber.de", 4)
    line = change(env, owner, "en")
    assert "mia@stueber.de" in line
    assert "automatic" in line
    waiting = HistoryEntry(AT, "max@stueber.de", "waiting", None, "2026-12-24T09:00:00+00:00", 5)
    assert "&lt;2026-12-24T09:00:00+00:00&gt;" in change(env, waiting, "de")
