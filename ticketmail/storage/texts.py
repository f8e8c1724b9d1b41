"""Every SQL statement of the desk's text modules (SPEC 9.1): list, add, change and delete
them, and what the answer form of a ticket needs to offer and fill one in.

Plain functions on a `Conn`: writes run inside `store.write(fn)`, reads on the
web's read-only connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketmail.storage._rows import iso, moment
from ticketmail.storage.dialect import Conn, Row, insert_id

__all__ = [
    "AnswerTexts",
    "TextModule",
    "add_text",
    "answer_texts",
    "delete_text",
    "list_texts",
    "text_module",
    "update_text",
]

_SELECT = (
    "SELECT id, title, lang, body, created_by, created_at, updated_by, updated_at "
    "FROM text_modules "
)
_ORDER = " ORDER BY lang, lower(title), id"


@dataclass(frozen=True, slots=True)
class TextModule:
    id: int
    title: str
    lang: str
    body: str  # as saved: its placeholders unfilled
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AnswerTexts:
    """What a ticket's answer form needs: the requester's name ('' when unknown), the
    ticket's language, the modules of that language, and the one asked for (if it exists)."""

    requester_name: str
    lang: str
    offered: tuple[TextModule, ...]
    chosen: TextModule | None


def _module(row: Row) -> TextModule:
    created, updated = moment(row["created_at"]), moment(row["updated_at"])
    assert created is not None
    assert updated is not None
    return TextModule(row["id"], row["title"], row["lang"], row["body"], row["created_by"],
                      created, row["updated_by"], updated)  # fmt: skip


def list_texts(conn: Conn, lang: str | None = None) -> tuple[TextModule, ...]:
    """Every module (of one language), by language and title."""
    if lang is None:
        rows = conn.execute(_SELECT + _ORDER).fetchall()
    else:
        rows = conn.execute(_SELECT + "WHERE lang = ?" + _ORDER, (lang,)).fetchall()
    return tuple(_module(row) for row in rows)


def text_module(conn: Conn, module: int) -> TextModule | None:
    row = conn.execute(_SELECT + "WHERE id = ?", (module,)).fetchone()
    return None if row is None else _module(row)


def add_text(conn: Conn, *, title: str, lang: str, body: str, agent: str, now: datetime) -> int:
    return insert_id(
        conn,
        "INSERT INTO text_modules(title, lang, body, created_by, created_at, updated_by, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (title, lang, body, agent, iso(now), agent, iso(now)),
    )


def update_text(
    conn: Conn,
    module: int,
    *,
    title: str,
    lang: str,
    body: str,
    agent: str,
    now: datetime,
) -> bool:
    """False: no such module."""
    cur = conn.execute(
        "UPDATE text_modules SET title = ?, lang = ?, body = ?, updated_by = ?, updated_at = ? "
        "WHERE id = ?",
        (title, lang, body, agent, iso(now), module),
    )
    return cur.rowcount == 1


def delete_text(conn: Conn, module: int) -> bool:
    """False: no such module."""
    return conn.execute("DELETE FROM text_modules WHERE id = ?", (module,)).rowcount == 1


def answer_texts(
    conn: Conn, requester: str, *, default_lang: str, chosen: int | None
) -> AnswerTexts:
    """The answer form's modules for a ticket of `requester`: the requester's language (a
    user's own, else `default_lang`)."""
    row = conn.execute("SELECT name, lang FROM users WHERE email = ?", (requester,)).fetchone()
    name = str(row["name"] or "") if row is not None else ""
    lang = str(row["lang"] or default_lang) if row is not None else default_lang
    picked = text_module(conn, chosen) if chosen is not None else None
    return AnswerTexts(name, lang, list_texts(conn, lang), picked)
