"""Pages from jinja2 templates (autoescaped), and a mail's text as safe HTML."""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ticketmail.inputs import tel_uri
from ticketmail.localtime import ago, full_when, local_day, local_when, size_text, utc_iso
from ticketmail.models import HistoryEntry
from ticketmail.storage.accounts import WebArticle, WebTicket
from ticketmail.storage.desk import DeskArticle, DeskTicket
from ticketmail.web.i18n import translator

__all__ = ["INLINE_IMAGE_TYPES", "page_environment", "text_html", "time_html"]

# The only types shown inline (as <img>); every file downloads as an attachment.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
# Parts of pages kept, made: articles (about 2-6 KB each with the article they were made
# from) and rows of the ticket list (about 1 KB each).
ARTICLES_KEPT = 4096
ROWS_KEPT = 8192


def text_html(text: str) -> Markup:
    """Plain text as HTML: everything escaped; http(s) links clickable, and nothing else."""
    parts: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        parts.append(str(escape(text[pos : match.start()])))
        parts.append(
            f'<a href="{escape(url)}" rel="noopener noreferrer nofollow">{escape(url)}</a>'
        )
        pos = end
    parts.append(str(escape(text[pos:])))
    return Markup("".join(parts))  # noqa: S704 - every piece escaped above


@functools.lru_cache(maxsize=16384)  # Babel's formatting is ~80 µs; a queue shows 50 of them
def time_html(moment: datetime | str, lang: str, zone: str) -> Markup:
    """An instant as a `<time>`: the UTC instant for machines, the full date, time and zone
    as its title, the local date and time as its text."""
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc_iso(moment), full_when(moment, lang, zone), local_when(moment, lang, zone)
    )


def _day_html(day: date | None, lang: str) -> Markup:
    if day is None:
        return Markup("\u2013")  # an en dash: no day
    return Markup('<time datetime="{}">{}</time>').format(day.isoformat(), local_day(day, lang))


class _Kept:
    """Parts of pages (a template's output), made once per language and kept by key; a
    kept part is used only while the value read now equals the one it was made from, so a
    changed article or ticket (or an author's new name) is made anew."""

    def __init__(self, env: jinja2.Environment, template: str, kept: int) -> None:
        self._env = env
        self._template = template
        self._kept = kept
        self._made: OrderedDict[tuple[Any, ...], tuple[object, Markup]] = OrderedDict()

    def get(self, key: tuple[Any, ...], value: object, lang: str, **values: Any) -> Markup:
        found = self._made.get(key)
        if found is not None and found[0] == value:
            self._made.move_to_end(key)
            return found[1]
        made = self._env.get_template(self._template).render(
            t=translator(lang), lang=lang, **values
        )
        html = Markup(made)  # noqa: S704 - an autoescaped template's output
        self._made[key] = (value, html)
        if len(self._made) > self._kept:
            self._made.popitem(last=False)
        return html


def page_environment(
    *, zone: str = "Europe/Berlin", articles_kept: int = ARTICLES_KEPT, rows_kept: int = ROWS_KEPT
) -> jinja2.Environment:
    """One environment for every page: autoescape on, undefined variables fail loudly;
    templates compiled once (no check for changed files per page); articles (the portal's
    and the desk's) and the list's rows made once and kept (`article_html`,
    `desk_article_html`, `ticket_row`), and the desk's history lines (`change_html`). Times
    are shown in `zone`, and times, days and sizes in the page's language (`lang`)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["text_html"] = text_html
    env.filters["size"] = jinja2.pass_context(lambda c, size: size_text(size, c["lang"]))
    env.filters["when"] = jinja2.pass_context(lambda c, at: time_html(at, c["lang"], zone))
    env.filters["ago"] = jinja2.pass_context(lambda c, at: ago(at, c["now"], c["lang"]))
    env.filters["day"] = jinja2.pass_context(lambda c, day: _day_html(day, c["lang"]))
    env.filters["tel"] = tel_uri
    articles = _Kept(env, "article.html", articles_kept)
    rows = _Kept(env, "ticket_row.html", rows_kept)
    desk_articles = _Kept(env, "desk_article.html", articles_kept)
    changes = _Kept(env, "desk_change.html", rows_kept)

    @jinja2.pass_context
    def article_html(context: Any, ticket: WebTicket, article: WebArticle) -> Markup:
        """An article of a ticket page (its files' links name the ticket)."""
        lang = str(context["lang"])
        return articles.get((lang, ticket.number, article.id), article, lang, ticket=ticket,
                            article=article, inline_types=INLINE_IMAGE_TYPES)  # fmt: skip

    @jinja2.pass_context
    def ticket_row(context: Any, ticket: WebTicket) -> Markup:
        """A ticket's row in the list (made anew when its relative time reads otherwise)."""
        lang = str(context["lang"])
        since = ago(ticket.updated_at, context["now"], lang)
        return rows.get((lang, ticket.number), (ticket, since), lang, ticket=ticket, since=since)

    @jinja2.pass_context
    def desk_article_html(
        context: Any, ticket: DeskTicket, article: DeskArticle, article_note: Callable[..., str]
    ) -> Markup:
        """An article of the desk's ticket page: its headers, note, text and files (the
        requester named by a ticket taken by phone is part of what it was made from)."""
        lang = str(context["lang"])
        return desk_articles.get(
            ("desk", lang, ticket.number, article.id), (article, ticket.requester), lang,
            number=ticket.number, requester=ticket.requester, a=article,
            article_note=article_note, inline_types=INLINE_IMAGE_TYPES,
        )  # fmt: skip

    @jinja2.pass_context
    def change_html(context: Any, change: HistoryEntry, local_text: Callable[..., str]) -> Markup:
        """A line of a ticket's history in the desk (`local_text`: a time in web.timezone)."""
        lang = str(context["lang"])
        return changes.get((lang, change), change, lang, h=change, local_text=local_text)

    env.globals["article_html"] = article_html
    env.globals["change_html"] = change_html
    env.globals["desk_article_html"] = desk_article_html
    env.globals["ticket_row"] = ticket_row
    return env
