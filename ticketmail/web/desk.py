"""The support desk's pages (SPEC 9): the queue, a ticket with its answer, note, status,
owner and merge forms, raw messages and files, pending registrations, institutions, the
agent's own settings. Only agents reach them; a customer gets 404 on every /desk path."""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ticketmail.errors import NotFoundError, TicketmailError, UsageError
from ticketmail.inputs import parse_day, parse_domains
from ticketmail.localtime import local_input, local_when, parse_local, size_text
from ticketmail.models import MERGED, SETTABLE_STATUSES, STATUSES, TicketRef
from ticketmail.outbound.actions import DeskResult, Origin
from ticketmail.outbound.compose import OutboundFile
from ticketmail.storage import accounts, callers
from ticketmail.storage import desk as desk_db
from ticketmail.storage.desk import DeskAgent
from ticketmail.storage.dialect import Conn
from ticketmail.storage.fulltext import MAX_QUERY
from ticketmail.storage.merge import MergeRefused, SourceMerged, merge_ticket, merged_into_of
from ticketmail.storage.tickets import version_of
from ticketmail.web import bulk, textmodules
from ticketmail.web.actions import account_mail
from ticketmail.web.base import (
    Refusal,
    Visitor,
    Web,
    asked_head,
    page,
    posted_form,
    redirect,
    route,
    search_deadline,
    visitor,
)
from ticketmail.web.changes import RECENT, NoSuchAgent, desk_job, owner_job, status_job
from ticketmail.web.i18n import LANGUAGES, Translate
from ticketmail.web.portal import (
    MAX_BODY,
    _read_uploads,
    _store_files,
    blob_response,
    content_disposition,
    upload_limits,
)
from ticketmail.web.presence import Present
from ticketmail.web.render import INLINE_IMAGE_TYPES

__all__ = ["PAGE_SIZE", "ROUTES", "refused"]

log = structlog.get_logger()

PAGE_SIZE = 50
REPLY_STATUSES = ("open", "answered", "closed")
# The queue's owner filter as the agent types it in either language (desk.assignee_hint).
ALIASES = {"ich": "me", "nobody": "none", "niemand": "none"}
_STATUS_NOTE = re.compile(r"status (\w+) → (\w+)(?: \(by (\S+) in the portal\))?")


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _not_found(request: Request, who: Visitor) -> Response:
    return page(request, who, "message.html", status=404, title="error.not_found_title",
                text="error.not_found")  # fmt: skip


async def _agent(request: Request) -> tuple[Visitor, DeskAgent | None, Response | None]:
    """The visiting agent; anyone else is sent to log in (anonymous) or gets 404."""
    who = await visitor(request)
    if who.agent is not None:
        return who, who.agent, None
    if who.me is None:
        return who, None, redirect(request, who, "/login")
    return who, None, _not_found(request, who)


AgentEndpoint = Callable[[Request, Visitor, DeskAgent], Awaitable[Response]]


def agents_only(endpoint: AgentEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint, called with the visiting agent; anyone else is sent to log in
    (anonymous) or gets 404, before the endpoint reads anything."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        who, agent, refused = await _agent(request)
        if refused is not None or agent is None:
            return refused or _not_found(request, who)
        try:
            return await endpoint(request, who, agent)
        except SourceMerged as exc:  # a form on a merged ticket (read-only): nothing done
            log.info("desk_merged_refused", ticket=exc.number, into=exc.into, agent=agent.email,
                     path=request.url.path)  # fmt: skip
            return agent_page(request, who, "desk_merged.html", status=409, number=exc.number,
                              into=exc.into)  # fmt: skip

    return guarded


def agent_page(
    request: Request, who: Visitor, template: str, /, *, status: int = 200, **values: object
) -> Response:
    zone = _web(request).config.web.timezone  # times typed and shown in the desk
    return page(
        request, who, template, status=status, statuses=STATUSES, settable=SETTABLE_STATUSES,
        local_text=functools.partial(local_when, lang=who.lang, zone=zone),
        local_input=functools.partial(local_input, zone=zone), zone=zone, **values,
    )  # fmt: skip


# --- the queue ---------------------------------------------------------------------------------


@agents_only
async def queue(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    query = request.query_params
    status = query.get("status") if query.get("status") in STATUSES else None
    customer = (query.get("customer") or "").strip()[:40]
    assignee = (query.get("assignee") or "").strip().casefold()[:320]
    alias = ALIASES.get(assignee, assignee)
    owner = {"": None, "me": agent.email, "none": ""}.get(alias, assignee)
    q = (query.get("q") or "")[:MAX_QUERY].strip()
    sort = str(query.get("sort") or "")
    sort = sort if sort in desk_db.SORTS else desk_db.DEFAULT_SORT
    try:
        number = max(1, min(int(query.get("page") or "1"), 100_000))
    except ValueError:
        number = 1
    if q:  # the articles stored a moment ago are searched too; on a search thread
        deadline, indexed = await search_deadline(web)
        found = await web.reader.search(
            desk_db.queue, status=status, customer=customer or None, owner=owner, q=q,
            limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, deadline=deadline, sort=sort,
        )  # fmt: skip
        if found.cut or not indexed:
            log.info("desk_search_cut", indexed=indexed, found=found.total)
        found = replace(found, cut=found.cut or not indexed)
    else:
        found = await web.reader(
            desk_db.queue, status=status, customer=customer or None, owner=owner, q=q,
            limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, sort=sort,
        )  # fmt: skip
    pages = max(1, -(-found.total // PAGE_SIZE))

    def link(**changes: object) -> str:
        params: dict[str, object] = {
            "status": status or "", "customer": customer, "assignee": assignee, "q": q,
            "page": number, "sort": "" if sort == desk_db.DEFAULT_SORT else sort,
        }  # fmt: skip
        params.update(changes)
        return "/desk?" + urllib.parse.urlencode({k: v for k, v in params.items() if v})

    def sorted_by(column: str) -> tuple[str, str | None]:
        """A column header's link (the other direction when sorted by it) and aria-sort."""
        if sort == column:
            other = f"-{column}" if f"-{column}" in desk_db.SORTS else column
            return link(sort=other, page=1), "ascending"
        if sort == f"-{column}":
            return link(sort=column, page=1), "descending"
        return link(sort=column, page=1), None

    agents = await web.reader(desk_db.list_agents)
    return agent_page(
        request, who, "desk_queue.html", queue=found, page=number, pages=pages,
        agents=agents, back=link(), bulk=bulk.chooser(query),
        chosen=status or "", customer=customer, assignee=assignee, q=q,
        counts=dict(found.counts), link=link, search_bound=desk_db.SEARCH_BOUND,
        sorted_by=sorted_by,
        previous_link=link(page=number - 1) if number > 1 else None,
        next_link=link(page=number + 1) if number < pages else None,
    )  # fmt: skip


# --- one ticket --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kept:
    """What an agent chose or typed in a desk form that was refused, shown again: `form`
    is reply, note, status or assign (the answer form's text is `body`)."""

    form: str = ""
    text: str = ""
    choice: str = ""
    until: str = ""  # the status form's waiting time as typed


NOTHING_KEPT = Kept()


@agents_only
async def show(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    return await _show(request, who, status=200, error=None)


async def _show(
    request: Request,
    who: Visitor,
    *,
    status: int,
    error: str | None,
    body: str = "",
    kept: Kept = NOTHING_KEPT,
    seen: int | None = None,
) -> Response:
    """The ticket page; `seen`: the version a refused form's page showed, whose changes
    since are named at the top."""
    web = _web(request)
    number: int = request.path_params["number"]
    found = await web.reader(desk_db.ticket_page, number)
    if found is None:
        return _not_found(request, who)
    if found.ticket.status == MERGED:  # read-only: its articles are on the target
        into = await web.reader(merged_into_of, number, customer=None)
        if into is not None:
            return redirect(request, who, f"/desk/tickets/{into}")
    agents = await web.reader(desk_db.list_agents)
    # The answer form's text modules; on a GET with ?text=, the chosen one filled in.
    texts = await textmodules.answer_form(request, who, found.ticket)
    requester = await web.reader(callers.requester_of, number)
    shown = body if texts.filled is None else texts.filled
    agent = who.agent
    assert agent is not None  # only agents_only endpoints show a desk ticket
    # A page view counts the agent as present; a HEAD or a refused form's page never does.
    present = await web.presence.visit(
        number, agent.email, agent.name or agent.email, typing=bool(shown.strip()),
        now=web.clock(), record=request.method == "GET" and not asked_head(request),
    )  # fmt: skip
    return agent_page(
        request, who, "desk_ticket.html", status=status, view=found, error=error or texts.error,
        body=shown, texts=texts.offered, present=presence_line(who.t, present),
        agents=agents, today=web.clock().date(), inline_types=INLINE_IMAGE_TYPES,
        upload_limit=size_text(web.config.smtp.max_message_bytes, who.lang),
        reply_statuses=REPLY_STATUSES, requester=requester, kept=kept,
        changed=found.since(seen) if seen is not None else (), article_note=article_note,
        limits=upload_limits(web, who.lang),
    )  # fmt: skip


def article_note(note: str, t: Translate) -> str:
    """An article's note as the desk shows it: the status change it records (stored as
    `status open → closed`, with `(by ADDRESS in the portal)` for a customer's) in the
    agent's language; any other note as it is."""
    found = _STATUS_NOTE.fullmatch(note)
    if found is None or not {found[1], found[2]} <= set(STATUSES):
        return note
    line = t("desk.history.status", old=t(f"status.{found[1]}"), new=t(f"status.{found[2]}"))
    return line if found[3] is None else t("desk.note_portal", line=line, who=found[3])


@agents_only
async def raw(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: int = request.path_params["number"]
    article: int = request.path_params["article"]
    sha256 = await web.reader(desk_db.raw_of, number, article)
    if sha256 is None:
        return _not_found(request, who)
    name = f"ticket-{number}-article-{article}.eml"
    disposition = content_disposition(name)
    served = await blob_response(
        web, sha256, media_type="message/rfc822", disposition=disposition, article=article
    )
    return served or _not_found(request, who)


@agents_only
async def download(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    found = await web.reader(
        desk_db.attachment, request.path_params["number"], request.path_params["file"]
    )
    if found is None:
        return _not_found(request, who)
    media = found.content_type if found.content_type in INLINE_IMAGE_TYPES else None
    disposition = content_disposition(found.filename, inline=bool(media))
    served = await blob_response(web, found.sha256, media_type=media or "application/octet-stream",
                                 disposition=disposition, attachment=found.id)  # fmt: skip
    return served or _not_found(request, who)


class _NobodyToTell(TicketmailError):
    """An answer nobody would receive: rolled back."""


T = TypeVar("T")
DONE, STALE, MISSING = "done", "stale", "missing"


def _seen(form: FormData) -> int | None:
    """The ticket's version as the form's page showed it (None: none, or not a number)."""
    raw = str(form.get("seen") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None


async def _checked(
    web: Web, number: int, form: FormData, act: Callable[[Conn], T]
) -> tuple[str, T | None]:
    """Run `act` on ticket `number` only if nothing changed since the form's page (its
    `seen` is the ticket's version), or with `force=1`. The check and the action are one
    write job, so of two agents racing on one version only the first acts (SPEC 9.1).
    A form without `seen` is taken as stale: nothing says what its agent saw."""
    seen = _seen(form)
    force = form.get("force") == "1"

    def job(conn: Conn) -> tuple[str, T | None]:
        refused = desk_db.refusal(conn, number, seen=seen, force=force)
        return (refused, None) if refused is not None else (DONE, act(conn))

    return await web.store.write(job)


async def _stale(
    request: Request, who: Visitor, agent: DeskAgent, form: FormData, kept: Kept, body: str = ""
) -> Response:
    """409: the ticket changed since the form's page; the page names what changed and
    keeps what was typed (its forms now carry the version it shows)."""
    seen = _seen(form)
    log.info("desk_stale", ticket=request.path_params["number"], agent=agent.email,
             form=kept.form, seen=seen)  # fmt: skip
    error = "desk.stale" if seen is not None else "desk.unseen"
    return await _show(request, who, status=409, error=error, body=body, kept=kept, seen=seen)


@agents_only
async def reply(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who, max_files=1000)
    text = _typed(str(form.get("body") or ""))
    status = str(form.get("status") or "answered")
    if status not in REPLY_STATUSES:
        status = "answered"
    uploads, error = await _read_uploads(form, web.config.smtp.max_message_bytes)
    if error is None and not text.strip():
        error = "error.required"
    if error is not None:
        code = 413 if error.startswith("error.too") else 400
        return await _show(request, who, status=code, error=error, body=text)
    views = await _store_files(web, uploads)
    files = tuple(OutboundFile(u.filename, u.content_type, u.data) for u in uploads)
    origin = Origin(actor=agent.email, agent_name=agent.name, attachments=views)
    desk = web.desk()
    now = web.clock()

    def act(conn: Conn, ticket: TicketRef) -> DeskResult:
        result = desk.reply(conn, ticket, text=text + "\n", files=files, status=status,
                            origin=origin, now=now)  # fmt: skip
        if not result.sent:
            raise _NobodyToTell
        return result

    try:
        outcome, _ = await _checked(web, number, form, desk_job(number, now - RECENT, act))
    except _NobodyToTell:
        return await _show(request, who, status=409, error="desk.nobody", body=text)
    if outcome == MISSING:
        return _not_found(request, who)
    if outcome == STALE:
        return await _stale(request, who, agent, form, Kept("reply", choice=status), body=text)
    web.queued()
    log.info("desk_reply", ticket=number, agent=agent.email, status=status, files=len(files))
    return redirect(request, who, f"/desk/tickets/{number}", done="reply")


# The furthest ahead a ticket may wait: a typo of the year is refused, not kept for ages.
MAX_WAIT = timedelta(days=5 * 366)


def waiting_until(web: Web, typed: str, now: datetime) -> tuple[datetime | None, str | None]:
    """(the instant a waiting ticket is open again, None) as typed in a datetime-local input
    in `web.timezone`; (None, the page's message) when none, not a time, past or too far."""
    if not typed:
        return None, "desk.until_missing"
    try:
        until = parse_local(typed, web.config.web.timezone)
    except ValueError:
        return None, "desk.until_bad"
    if until <= now:
        return None, "desk.until_past"
    if until > now + MAX_WAIT:
        return None, "desk.until_far"
    return until, None


def _typed(text: str) -> str:
    return text[:MAX_BODY].replace("\r\n", "\n").strip("\n")


async def refused(request: Request, who: Visitor, refusal: Refusal) -> Response | None:
    """The answer form of a desk ticket refused for its size, its files or an expired token,
    shown again with the text typed into it (SPEC 8.4); None for other paths."""
    if who.agent is None or "number" not in request.path_params:
        return None
    if not request.url.path.endswith("/reply"):
        return None
    return await _show(request, who, status=refusal.status, error=refusal.error,
                       body=_typed(refusal.text("body")))  # fmt: skip


@agents_only
async def change_status(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who)
    status = str(form.get("status") or "")
    note = str(form.get("note") or "")[:MAX_BODY].replace("\r\n", "\n").strip()
    typed = str(form.get("until") or "")[:40].strip()
    kept = Kept("status", note, status, typed)
    if status not in SETTABLE_STATUSES:
        return await _show(request, who, status=400, error="error.required", kept=kept)
    now = web.clock()
    until, wrong = (None, None) if status != "waiting" else waiting_until(web, typed, now)
    if wrong is not None:
        log.info("desk_until_refused", ticket=number, agent=agent.email, reason=wrong)
        return await _show(request, who, status=400, error=wrong, kept=kept)
    job = status_job(web, agent, number, status=status, note=note, now=now, until=until)
    outcome, result = await _checked(web, number, form, job)
    if outcome == MISSING:
        return _not_found(request, who)
    if outcome == STALE or result is None:
        return await _stale(request, who, agent, form, kept)
    if result.sent:
        web.queued()
    log.info("desk_status", ticket=number, agent=agent.email, status=status,
             unchanged=result.old_status == status,
             until=until.isoformat() if until else None)  # fmt: skip
    done = "waiting" if status == "waiting" else "status"
    return redirect(request, who, f"/desk/tickets/{number}", done=done)


@agents_only
async def note(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who)
    text = _typed(str(form.get("body") or ""))
    if not text.strip():
        return await _show(request, who, status=400, error="error.required")
    now = web.clock()
    email = agent.email
    outcome, article = await _checked(
        web, number, form,
        lambda conn: desk_db.add_note(conn, number, agent=email, body=text, now=now),
    )  # fmt: skip
    if outcome == MISSING:
        return _not_found(request, who)
    if outcome == STALE:
        return await _stale(request, who, agent, form, Kept("note", text))
    log.info("desk_note", ticket=number, agent=email, article=article)
    return redirect(request, who, f"/desk/tickets/{number}", done="note")


@agents_only
async def assign(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who)
    chosen = str(form.get("agent") or "").strip().casefold() or None
    job = owner_job(web, agent, number, chosen, now=web.clock())
    try:
        outcome, change = await _checked(web, number, form, job)
    except NoSuchAgent:
        return await _show(request, who, status=400, error="desk.no_such_agent")
    if outcome == MISSING or (outcome == DONE and change is None):
        return _not_found(request, who)
    if outcome == STALE:
        return await _stale(request, who, agent, form, Kept("assign", choice=chosen or ""))
    web.queued()
    log.info("desk_assign", ticket=number, agent=agent.email, owner=chosen,
             changed=change is not None and change.changed)  # fmt: skip
    return redirect(request, who, f"/desk/tickets/{number}", done="assign")


def presence_line(t: Translate, present: tuple[Present, ...]) -> str:
    """'Also open by: Anna Agent (typing), …' for the other agents on a ticket; empty for none."""
    if not present:
        return ""
    names = (t("desk.presence_typing", name=p.name) if p.typing else p.name for p in present)
    return t("desk.presence", names=", ".join(names))


@agents_only
async def presence(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    """The ticket page's heartbeat (static/presence.js): the agent still has the ticket open
    and their answer form holds text (`typing=1`) or not; answers the other agents on it.
    Nothing goes through the writer: the registry in memory, or on PostgreSQL the shared
    UNLOGGED table (SPEC 9.1, 10)."""
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who, max_files=0)
    typing = form.get("typing") == "1"
    if await web.reader(version_of, number) is None:
        return _not_found(request, who)
    present = await web.presence.visit(
        number, agent.email, agent.name or agent.email, typing=typing, now=web.clock(),
        record=True,
    )  # fmt: skip
    return JSONResponse({
        "line": presence_line(who.t, present),
        "others": [{"name": p.name, "typing": p.typing} for p in present],
    })  # fmt: skip


_MERGE_REFUSED = {"self": 400, "institutions": 409, "source_merged": 409, "into_merged": 409}


@agents_only
async def merge(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    """This ticket merged into the one named by `into` (SPEC 9.1): 303 to the target."""
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who)
    typed = str(form.get("into") or "").strip().lstrip("#")[:20]
    into = int(typed) if typed.isascii() and typed.isdigit() and len(typed) < 12 else None
    kept = Kept("merge", choice=typed)
    if into is None:
        return await _show(request, who, status=400, error="desk.merge_no_number", kept=kept)
    now = web.clock()
    email = agent.email
    try:
        outcome, merged = await _checked(
            web, number, form,
            lambda conn: merge_ticket(conn, number, into, by=email, now=now),
        )  # fmt: skip
    except MergeRefused as exc:
        log.info("desk_merge_refused", ticket=number, into=into, agent=email, reason=exc.reason)
        return await _show(request, who, status=_MERGE_REFUSED[exc.reason],
                           error=f"desk.merge_{exc.reason}", kept=kept)  # fmt: skip
    except NotFoundError:  # `into` names no ticket (this one was found: it is checked first)
        log.info("desk_merge_refused", ticket=number, into=into, agent=email, reason="missing")
        return await _show(request, who, status=400, error="desk.merge_missing", kept=kept)
    if outcome == MISSING:
        return _not_found(request, who)
    if outcome == STALE or merged is None:
        return await _stale(request, who, agent, form, kept)
    log.info("desk_merge", ticket=number, into=into, agent=email, articles=merged.articles,
             files=merged.files)  # fmt: skip
    return redirect(request, who, f"/desk/tickets/{into}", done="merge")


# --- registrations -----------------------------------------------------------------------------


@agents_only
async def registrations(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    found = await _web(request).reader(desk_db.pending_registrations)
    return agent_page(request, who, "desk_registrations.html", pending=found)


async def _decide(request: Request, who: Visitor, agent: DeskAgent, decision: str) -> Response:
    web = _web(request)
    await posted_form(request, who)
    registration: int = request.path_params["id"]
    now = web.clock()
    desk = web.desk()

    def write(conn: Conn) -> str | None:
        email = desk_db.registration_email(conn, registration)
        if email is None:
            return None
        if decision == "approve":
            reg = accounts.approve_registration(conn, email, now=now)
        else:
            reg = accounts.reject_registration(conn, email, now=now)
        account_mail(
            conn, f"registration_{decision.removesuffix('e')}ed", config=web.config, desk=desk,
            email=reg.email, name=reg.name, lang=reg.lang, customer=reg.customer,
            link=web.link("/login"), now=now,
        )  # fmt: skip
        return email

    email = await web.store.write(write)
    if email is None:
        return _not_found(request, who)
    web.queued()
    log.info("desk_registration", decision=decision, email=email, agent=agent.email)
    return redirect(request, who, "/desk/registrations", done=f"{decision.removesuffix('e')}ed")


@agents_only
async def approve(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    return await _decide(request, who, agent, "approve")


@agents_only
async def reject(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    return await _decide(request, who, agent, "reject")


# --- institutions ------------------------------------------------------------------------------


@agents_only
async def customers(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    found = await web.reader(desk_db.institutions)
    return agent_page(request, who, "desk_customers.html", institutions=found,
                      today=web.clock().date())  # fmt: skip


@agents_only
async def customer(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    number: str = request.path_params["number"]
    error: str | None = None
    status = 200
    if request.method == "POST":
        form = await posted_form(request, who)
        try:
            support = parse_day(str(form.get("support_until") or ""), what="support_until")
            trial = parse_day(str(form.get("trial_until") or ""), what="trial_until")
            domains = parse_domains(str(form.get("domains") or ""))
        except UsageError:
            error, status = _institution_problem(who, form), 400
        else:

            def write(conn: Conn) -> bool:
                try:
                    desk_db.update_institution(
                        conn, number, support_until=support, trial_until=trial, domains=domains
                    )
                except NotFoundError:
                    return False
                return True

            if not await web.store.write(write):
                return _not_found(request, who)
            log.info("desk_customer_saved", customer=number, agent=agent.email,
                     support_until=str(support), trial_until=str(trial))  # fmt: skip
            return redirect(request, who, f"/desk/customers/{number}", done="institution")
    found = await web.reader(desk_db.institution, number)
    if found is None:
        return _not_found(request, who)
    tickets = await web.reader(
        desk_db.queue, status=None, customer=number, owner=None, q="", limit=20, offset=0
    )
    return agent_page(request, who, "desk_customer.html", status=status, found=found,
                      tickets=tickets, error=error, today=web.clock().date())  # fmt: skip


def _institution_problem(who: Visitor, form: FormData) -> str:
    """The line, in the agent's language, naming the field and the text an institution's
    form was refused for."""
    for name, label in (("support_until", "desk.contract"), ("trial_until", "desk.trial")):
        text = str(form.get(name) or "").strip()
        try:
            parse_day(text, what=name)
        except UsageError:
            return who.t("desk.bad_day", field=who.t(label), text=text)
    for item in str(form.get("domains") or "").split(","):
        try:
            parse_domains(item)
        except UsageError:
            return who.t("desk.bad_domain", text=item.strip())
    return who.t("error.bad_request")


# --- the agent's own settings ------------------------------------------------------------------


@agents_only
async def settings(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    web = _web(request)
    if request.method == "GET":
        return agent_page(request, who, "desk_settings.html", saved=False)
    form = await posted_form(request, who)
    lang = str(form.get("language") or "")
    notify = form.get("notify") == "1"
    if lang not in LANGUAGES:
        lang = who.lang
    email = agent.email
    await web.store.write(
        lambda conn: desk_db.set_agent_settings(conn, email, lang=lang, notify=notify)
    )
    log.info("desk_settings_saved", agent=email, lang=lang, notify=notify)
    return redirect(request, who, "/desk/settings", done="settings")


async def nowhere(request: Request) -> Response:
    who, _, refused = await _agent(request)
    return refused or _not_found(request, who)


ROUTES = [
    route("/desk", queue, "GET"),
    route("/desk/tickets/{number:int}", show, "GET"),
    route("/desk/tickets/{number:int}/reply", reply, "POST"),
    route("/desk/tickets/{number:int}/note", note, "POST"),
    route("/desk/tickets/{number:int}/status", change_status, "POST"),
    route("/desk/tickets/{number:int}/assign", assign, "POST"),
    route("/desk/tickets/{number:int}/presence", presence, "POST"),
    route("/desk/tickets/{number:int}/merge", merge, "POST"),
    route("/desk/tickets/{number:int}/raw/{article:int}", raw, "GET"),
    route("/desk/bulk", agents_only(bulk.act), "POST"),
    route("/desk/tickets/{number:int}/files/{file:int}", download, "GET"),
    route("/desk/registrations", registrations, "GET"),
    route("/desk/registrations/{id:int}/approve", approve, "POST"),
    route("/desk/registrations/{id:int}/reject", reject, "POST"),
    route("/desk/customers", customers, "GET"),
    route("/desk/customers/{number}", customer, "GET", "POST"),
    route("/desk/settings", settings, "GET", "POST"),
    route("/desk/texts", agents_only(textmodules.listing), "GET", "POST"),
    route("/desk/texts/{id:int}", agents_only(textmodules.edit), "POST"),
    route("/desk/texts/{id:int}/delete", agents_only(textmodules.delete), "POST"),
    route("/desk/{rest:path}", nowhere, "GET", "POST"),
]
