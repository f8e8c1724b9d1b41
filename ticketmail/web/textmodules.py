"""The desk's text modules (SPEC 9.1): the page that lists, adds, changes and deletes them,
and the module filled into a ticket's answer form (`GET /desk/tickets/{number}?text={id}`).
Only agents reach them; the routes are listed in web/desk.py."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.storage import texts as texts_db
from ticketmail.storage.desk import DeskAgent, DeskTicket
from ticketmail.storage.dialect import Conn
from ticketmail.storage.texts import TextModule
from ticketmail.web.base import MAX_NUMBER, Refusal, Visitor, Web, page, posted_form, redirect
from ticketmail.web.i18n import LANGUAGES
from ticketmail.web.placeholders import PLACEHOLDERS, fill, foreign

__all__ = [
    "MAX_TEXT",
    "MAX_TITLE",
    "AnswerForm",
    "add",
    "answer_form",
    "delete",
    "edit",
    "listing",
    "refused",
]

log = structlog.get_logger()

MAX_TEXT = 20_000  # characters of a module's body
MAX_TITLE = 200  # characters of its title
_KEPT = 200_000  # characters of a refused field shown again (as the answer form keeps)
_DONE = {"added": "desk.texts_added", "saved": "desk.texts_saved",
         "deleted": "desk.texts_deleted"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Draft:
    """A module's fields as typed into a form (`id` None: the add form)."""

    id: int | None
    title: str
    lang: str
    body: str


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """The text modules of a ticket's answer form: those offered (the ticket's language), the
    chosen one filled in (None: none chosen), and the line when the chosen one is gone."""

    offered: tuple[TextModule, ...]
    filled: str | None
    error: str | None


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _draft(module: int | None, form: dict[str, str]) -> Draft:
    """The typed fields (cut where no module could be that long: a refused one comes back
    with its text): the title on one line, the body's lines ending in LF, no blank lines
    around it."""
    title = " ".join(form.get("title", "")[:_KEPT].split())
    body = form.get("body", "")[:_KEPT].replace("\r\n", "\n").strip("\n")
    return Draft(module, title, form.get("lang", ""), body)


def _problem(draft: Draft, lang: str) -> tuple[str, dict[str, object]] | None:
    """The one line (catalogue key and fields, for a page in `lang`) saying why a draft
    cannot be saved."""
    body = draft.body
    if not draft.title or not body.strip():
        return "error.required", {}
    if draft.lang not in LANGUAGES:
        return "desk.texts_bad_lang", {}
    if len(draft.title) > MAX_TITLE:
        return "desk.texts_title_too_long", {"count": MAX_TITLE}
    if len(body) > MAX_TEXT:
        return "desk.texts_too_long", {"count": _thousands(MAX_TEXT, lang)}
    named = foreign(body)
    if named:
        allowed = ", ".join("{{ " + p + " }}" for p in PLACEHOLDERS)
        return "desk.texts_placeholder", {"found": ", ".join(named), "allowed": allowed}
    return None


def _thousands(number: int, lang: str) -> str:
    return f"{number:,}".replace(",", "." if lang == "de" else ",")


def _text_fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


def _listing_page(
    request: Request,
    who: Visitor,
    *,
    status: int = 200,
    modules: tuple[TextModule, ...],
    draft: Draft | None = None,
    error: tuple[str, dict[str, object]] | None = None,
) -> Response:
    done = _DONE.get(request.query_params.get("done") or "")
    return page(
        request, who, "desk_texts.html", status=status, modules=modules, draft=draft,
        error=error, done=done if request.method == "GET" else None, languages=LANGUAGES,
        max_text=MAX_TEXT, max_title=MAX_TITLE,
    )  # fmt: skip


async def listing(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    """GET: every module, per language, with the add form; POST: add one."""
    if request.method == "POST":
        return await add(request, who, agent)
    modules = await _web(request).reader(texts_db.list_texts)
    return _listing_page(request, who, modules=modules)


async def _refuse(
    request: Request, who: Visitor, draft: Draft, error: tuple[str, dict[str, object]]
) -> Response:
    modules = await _web(request).reader(texts_db.list_texts)
    status = 413 if error[0] == "desk.texts_too_long" else 400
    log.info("desk_text_refused", agent=who.agent.email if who.agent else None,
             text=draft.id, reason=error[0])  # fmt: skip
    return _listing_page(request, who, status=status, modules=modules, draft=draft, error=error)


async def add(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    draft = _draft(None, _text_fields(await posted_form(request, who)))
    problem = _problem(draft, who.lang)
    if problem is not None:
        return await _refuse(request, who, draft, problem)
    now = web.clock()
    module = await web.store.write(
        lambda conn: texts_db.add_text(
            conn, title=draft.title, lang=draft.lang, body=draft.body, agent=agent.email, now=now
        )
    )
    log.info("desk_text_added", text=module, lang=draft.lang, agent=agent.email)
    return redirect(request, who, f"/desk/texts?done=added#text-{module}")


async def edit(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    module: int = request.path_params["id"]
    draft = _draft(module, _text_fields(await posted_form(request, who)))
    if await web.reader(texts_db.text_module, module) is None:
        return _not_found(request, who)
    problem = _problem(draft, who.lang)
    if problem is not None:
        return await _refuse(request, who, draft, problem)
    now = web.clock()

    def write(conn: Conn) -> bool:
        return texts_db.update_text(conn, module, title=draft.title, lang=draft.lang,
                                    body=draft.body, agent=agent.email, now=now)  # fmt: skip

    if not await web.store.write(write):
        return _not_found(request, who)
    log.info("desk_text_saved", text=module, lang=draft.lang, agent=agent.email)
    return redirect(request, who, f"/desk/texts?done=saved#text-{module}")


async def delete(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    module: int = request.path_params["id"]
    await posted_form(request, who)
    if not await web.store.write(lambda conn: texts_db.delete_text(conn, module)):
        return _not_found(request, who)
    log.info("desk_text_deleted", text=module, agent=agent.email)
    return redirect(request, who, "/desk/texts?done=deleted")


def _not_found(request: Request, who: Visitor) -> Response:
    return page(request, who, "message.html", status=404, title="error.not_found_title",
                text="error.not_found")  # fmt: skip


async def refused(request: Request, who: Visitor, refusal: Refusal) -> Response | None:
    """A module's form refused for its size or an expired token, shown again with what was
    typed into it (SPEC 8.4); None for other paths."""
    path = request.url.path
    if who.agent is None or not path.startswith("/desk/texts") or path.endswith("/delete"):
        return None
    module = request.path_params.get("id")
    if path != "/desk/texts" and not isinstance(module, int):
        return None
    draft = _draft(module, dict(refusal.fields))
    modules = await _web(request).reader(texts_db.list_texts)
    return _listing_page(request, who, status=refusal.status, modules=modules, draft=draft,
                         error=(refusal.error, {"count": 20, "size": "", "days": 0}))  # fmt: skip


async def answer_form(request: Request, who: Visitor, ticket: DeskTicket) -> AnswerForm:
    """The modules a ticket's answer form offers, and the one `?text=` asks for filled in with
    the ticket's requester, number, subject and the visiting agent's name."""
    web = _web(request)
    asked = request.query_params.get("text")
    chosen: int | None = None
    if asked is not None and asked.isascii() and asked.isdigit() and len(asked) < 20:
        chosen = int(asked) if 0 < int(asked) <= MAX_NUMBER else None
    found = await web.reader(
        texts_db.answer_texts, ticket.requester, chosen=chosen,
        default_lang=web.config.templates.default_language,
    )  # fmt: skip
    if asked is None:
        return AnswerForm(found.offered, None, None)
    if found.chosen is None:
        return AnswerForm(found.offered, None, "desk.texts_gone")
    values = {
        "requester.name": found.requester_name or ticket.requester,
        "ticket.number": str(ticket.number),
        "ticket.subject": ticket.subject,
        "agent.name": who.agent.name if who.agent is not None else "",
    }
    log.info("desk_text_filled", ticket=ticket.number, text=found.chosen.id)
    return AnswerForm(found.offered, fill(found.chosen.body, values=values), None)
