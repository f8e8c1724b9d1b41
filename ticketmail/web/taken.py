"""The desk's new ticket for a user, taken by phone or otherwise (SPEC 9.1): the form, and
the ticket opened the way a web ticket is (numbering, article, confirmation, agents told);
a caller not yet registered becomes a user of the chosen institution first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.errors import UsageError
from ticketmail.inputs import parse_email, parse_phone
from ticketmail.storage import accounts, callers
from ticketmail.storage.desk import DeskAgent
from ticketmail.storage.dialect import Conn
from ticketmail.web.actions import Posted, Taken, post_article
from ticketmail.web.base import Refusal, Visitor, Web, posted_form, redirect, route
from ticketmail.web.desk import agent_page, agents_only
from ticketmail.web.portal import (
    MAX_BODY,
    MAX_SUBJECT,
    _read_uploads,
    _store_files,
    upload_limits,
)

__all__ = ["ROUTES", "refused"]

log = structlog.get_logger()

PATH = "/desk/tickets/new"
CHANNELS = ("phone", "other")  # the channels an agent takes a ticket by
_FIELDS = ("requester", "subject", "body", "channel", "customer", "name", "phone")


@dataclass(frozen=True, slots=True)
class _Typed:
    """What the agent typed, kept to show the form again."""

    requester: str = ""
    subject: str = ""
    body: str = ""
    channel: str = "phone"
    confirm: bool = True
    customer: str = ""
    name: str = ""
    phone: str = ""


def _typed(fields: Mapping[str, str], *, confirm: bool) -> _Typed:
    def text(name: str, limit: int) -> str:
        return str(fields.get(name) or "").strip()[:limit]

    channel = text("channel", 10)
    return _Typed(
        requester=text("requester", 320),
        subject=" ".join(text("subject", 1000).split())[:MAX_SUBJECT],
        body=str(fields.get("body") or "")[:MAX_BODY].replace("\r\n", "\n").strip("\n"),
        channel=channel if channel in CHANNELS else "phone",
        confirm=confirm,
        customer=text("customer", 40),
        name=text("name", 200),
        phone=text("phone", 100),
    )


def _form(
    request: Request, who: Visitor, typed: _Typed, *, status: int = 200, error: str | None = None
) -> Response:
    web: Web = request.app.state.web
    return agent_page(request, who, "desk_new.html", status=status, typed=typed, error=error,
                      channels=CHANNELS, limits=upload_limits(web, who.lang))  # fmt: skip


def _problem(typed: _Typed) -> tuple[str | None, str, str]:
    """(why the form is refused, or None; the requester's address; the phone number)."""
    try:
        email = parse_email(typed.requester)
    except UsageError:
        return "desk.new_requester", "", ""
    try:
        phone = parse_phone(typed.phone)
    except UsageError:
        return "error.phone", email, ""
    if not typed.subject or not typed.body.strip():
        return "desk.new_required", email, phone
    return None, email, phone


@agents_only
async def take_ticket(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    if request.method == "GET":
        return _form(request, who, _Typed())
    web: Web = request.app.state.web
    form = await posted_form(request, who, max_files=1000)
    typed = _typed(_text_fields(form), confirm=form.get("confirm") == "on")
    uploads, error = await _read_uploads(form, web.config.smtp.max_message_bytes)
    if error is not None:
        return _form(request, who, typed, status=413, error=error)
    error, email, phone = _problem(typed)
    if error is None:
        error = await web.reader(_check_caller, email, typed)
    if error is not None:
        return _form(request, who, typed, status=400, error=error)
    files = await _store_files(web, uploads)
    now = web.clock()
    desk = web.desk()
    taken = Taken(agent=agent.email, channel=typed.channel, confirm=typed.confirm)
    added = False

    def write(conn: Conn) -> Posted | str:
        nonlocal added
        caller = callers.caller_of(conn, email)
        if caller is None:
            why = _new_caller_problem(typed)
            if why is not None:
                return why
            refused = callers.add_caller(
                conn, email, customer=typed.customer, name=typed.name, phone=phone, now=now
            )
            if refused is not None:
                return f"desk.new_{refused}"
            added = True
        elif typed.customer and typed.customer != caller.customer:
            return "desk.new_other_customer"
        elif phone and phone != caller.phone:
            callers.set_phone(conn, email, phone)
        return post_article(
            conn, config=web.config, desk=desk, ids=web.ids, email=email, number=None,
            subject=typed.subject, body=typed.body + "\n", files=files, now=now, taken=taken,
        )  # fmt: skip

    posted = await web.store.write(write, flush=web.blobs.sync)
    if isinstance(posted, str) or posted.ticket is None:
        why = posted if isinstance(posted, str) else "desk.new_requester"
        return _form(request, who, typed, status=400, error=why)
    if posted.queued:
        web.queued()
    log.info("desk_ticket_taken", ticket=posted.ticket, agent=agent.email, requester=email,
             channel=typed.channel, confirm=typed.confirm, new_user=added,
             files=len(files))  # fmt: skip
    return redirect(request, who, f"/desk/tickets/{posted.ticket}", done="taken")


def _text_fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if k in _FIELDS and isinstance(v, str)}


def _new_caller_problem(typed: _Typed) -> str | None:
    """Why a caller not yet registered cannot be made a user from the form, or None."""
    if not typed.customer or not typed.name:
        return "desk.new_unknown"
    return None


def _check_caller(conn: Conn, email: str, typed: _Typed) -> str | None:
    """The form's caller checked before its files are stored (the write checks again)."""
    caller = callers.caller_of(conn, email)
    if caller is not None:
        if typed.customer and typed.customer != caller.customer:
            return "desk.new_other_customer"
        return None
    why = _new_caller_problem(typed)
    if why is None and accounts.customer_of(conn, typed.customer) is None:
        why = "desk.new_no_customer"
    return why


async def refused(request: Request, who: Visitor, refusal: Refusal) -> Response | None:
    """The form refused for its size, its files or an expired token, shown again with what
    was typed into it and the line saying why (SPEC 8.4); None for other paths."""
    if who.agent is None or request.url.path != PATH:
        return None
    typed = _typed(refusal.fields, confirm=refusal.text("confirm") == "on")
    return _form(request, who, typed, status=refusal.status, error=refusal.error)


ROUTES = [route(PATH, take_ticket, "GET", "POST")]
