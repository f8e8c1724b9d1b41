"""The portal's ticket pages: the institution's list, one ticket, new tickets, replies,
close and reopen, and attachments (SPEC 8.1, 8.3)."""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
import urllib.parse
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ticketmail.localtime import size_text
from ticketmail.mail.parse import safe_filename
from ticketmail.models import CUSTOMER_STATUSES, MERGED, AttachmentView, User
from ticketmail.storage import accounts, portal_list
from ticketmail.storage.accounts import Identity, WebTicketPage
from ticketmail.storage.dialect import Conn
from ticketmail.storage.fulltext import MAX_QUERY
from ticketmail.storage.merge import merged_into_of
from ticketmail.storage.portal_list import TicketList
from ticketmail.web.actions import Posted, post_article, set_status
from ticketmail.web.base import (
    Refusal,
    Visitor,
    Web,
    page,
    posted_form,
    redirect,
    route,
    search_deadline,
    visitor,
    visitor_reading,
)
from ticketmail.web.limits import MAX_FILES
from ticketmail.web.render import INLINE_IMAGE_TYPES

__all__ = ["MAX_FILES", "PAGE_SIZE", "ROUTES", "blob_response", "refused", "upload_limits"]

log = structlog.get_logger()

PAGE_SIZE = 25
MAX_SUBJECT = 200
MAX_BODY = 200_000
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


@dataclass(frozen=True, slots=True)
class _Upload:
    filename: str
    content_type: str
    data: bytes


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _supported(web: Web, me: Identity) -> bool:
    return me.customer.has_support(web.clock().date())


def _gate(request: Request, who: Visitor) -> Response | None:
    """Anonymous visitors go to the login page; pending accounts see only that."""
    if who.me is None:
        return redirect(request, who, "/login")
    if who.me.pending:
        return page(request, who, "pending.html", status=403)
    return None


def not_found(request: Request, who: Visitor) -> Response:
    return page(request, who, "message.html", status=404, title="error.not_found_title",
                text="error.not_found")  # fmt: skip


def _limits(web: Web, who: Visitor) -> dict[str, str | int]:
    return upload_limits(web, who.lang)


def upload_limits(web: Web, lang: str) -> dict[str, str | int]:
    """A form's files as the page names them and attach.js keeps to: count, total size."""
    total = web.config.smtp.max_message_bytes
    return {"count": MAX_FILES, "size": size_text(total, lang), "bytes": total}


# --- the list -------------------------------------------------------------------------------


async def tickets(request: Request) -> Response:
    query = request.query_params
    status = query.get("status") if query.get("status") in CUSTOMER_STATUSES else None
    q = (query.get("q") or "")[:MAX_QUERY].strip()
    mine = query.get("mine") == "1"
    try:
        number = max(1, min(int(query.get("page") or "1"), 100_000))
    except ValueError:
        number = 1
    web = _web(request)
    if q:  # the session on a reader, the search on a search thread (web/reader.py)
        who = await visitor(request)
        listed = None
        if who.me is not None and not who.me.pending:
            deadline, indexed = await search_deadline(web)
            listed = await web.reader.search(
                portal_list.search_tickets, who.me.customer.number, q=q, status=status,
                requester=who.me.email if mine else None, limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE, deadline=deadline,
            )  # fmt: skip
            if listed.cut or not indexed:
                log.info("web_search_cut", indexed=indexed, found=listed.total)
            listed = replace(listed, cut=listed.cut or not indexed)
    else:

        def read(conn: Conn, me: Identity) -> TicketList:
            found, total = portal_list.list_tickets(
                conn, me.customer.number, status=status, requester=me.email if mine else None,
                limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE,
            )  # fmt: skip
            return TicketList(tuple(found), total)

        who, listed = await visitor_reading(request, read)
    gate = _gate(request, who)
    if gate is not None:
        return gate
    assert who.me is not None
    assert listed is not None
    pages = max(1, -(-listed.total // PAGE_SIZE))

    def link(to_page: int) -> str:
        params = {"status": status or "", "q": q, "mine": "1" if mine else "", "page": to_page}
        return "/tickets?" + urllib.parse.urlencode({k: v for k, v in params.items() if v})

    return page(
        request, who, "tickets.html", tickets=listed.tickets, total=listed.total, page=number,
        pages=pages, chosen=status or "", q=q, mine=mine, statuses=CUSTOMER_STATUSES,
        cut=listed.cut,
        previous_link=link(number - 1) if number > 1 else None,
        next_link=link(number + 1) if number < pages else None,
        supported=_supported(web, who.me),
    )  # fmt: skip


# --- one ticket -----------------------------------------------------------------------------


async def show(request: Request) -> Response:
    number: int = request.path_params["number"]
    who, found = await visitor_reading(
        request, lambda conn, me: accounts.ticket_page(conn, me.customer.number, number)
    )
    gate = _gate(request, who)
    if gate is not None:
        return gate
    if found is None:
        return not_found(request, who)
    if found.ticket.status == MERGED:
        return await _to_target(request, who, number)
    return await _show(request, who, status=200, error=None, found=found)


async def _to_target(request: Request, who: Visitor, number: int) -> Response:
    """A merged ticket of the visitor's institution: 303 to the ticket it was merged into
    (SPEC 9.1), doing nothing else."""
    assert who.me is not None
    into = await _web(request).reader(merged_into_of, number, customer=who.me.customer.number)
    if into is None:
        return not_found(request, who)
    log.info("web_merged_redirect", ticket=number, into=into, by=who.me.email)
    return redirect(request, who, f"/tickets/{into}")


async def _show(
    request: Request,
    who: Visitor,
    *,
    status: int,
    error: str | None,
    body: str = "",
    found: WebTicketPage | None = None,
) -> Response:
    """The ticket page; `found`: the ticket as read with the visitor (else read here)."""
    assert who.me is not None
    web = _web(request)
    if found is None:
        number: int = request.path_params["number"]
        found = await web.reader(accounts.ticket_page, who.me.customer.number, number)
    if found is None:
        return not_found(request, who)
    now = web.clock()
    closed_at = found.ticket.closed_at
    reopen_days = web.config.tickets.reopen_days
    reopenable = found.ticket.status == "closed" and (
        closed_at is None or now < closed_at + timedelta(days=reopen_days)
    )
    return page(
        request, who, "ticket.html", status=status, view=found, error=error, body=body,
        reopenable=reopenable, reopen_days=reopen_days, inline_types=INLINE_IMAGE_TYPES,
        supported=_supported(web, who.me), limits=_limits(web, who),
    )  # fmt: skip


async def download(request: Request) -> Response:
    who = await visitor(request)
    gate = _gate(request, who)
    if gate is not None:
        return gate if who.me is None else not_found(request, who)
    assert who.me is not None
    web = _web(request)
    found = await web.reader(
        accounts.attachment_of, who.me.customer.number, request.path_params["number"],
        request.path_params["file"],
    )  # fmt: skip
    if found is None:
        return not_found(request, who)
    media = found.content_type if found.content_type in INLINE_IMAGE_TYPES else None
    disposition = content_disposition(found.filename, inline=bool(media))
    served = await blob_response(web, found.sha256, media_type=media or "application/octet-stream",
                                 disposition=disposition, attachment=found.id)  # fmt: skip
    return served or not_found(request, who)


async def blob_response(
    web: Web, sha256: str, *, media_type: str, disposition: str, **about: object
) -> Response | None:
    """A stored blob as a download: the file itself where blobs are files (SQLite's data
    directory), else its bytes from the store (PostgreSQL), with the same headers but the
    ETag (there the digest) and the byte ranges a file has. None when it is missing (logged
    with `about`: which attachment or article named it)."""
    headers = {"Content-Disposition": disposition}
    path = web.blobs.file_of(sha256)
    if path is not None:
        if await asyncio.to_thread(path.is_file):
            return FileResponse(path, media_type=media_type, headers=headers)
    else:
        with contextlib.suppress(FileNotFoundError):
            data = await asyncio.to_thread(web.blobs.get, sha256)
            return Response(data, media_type=media_type, headers={**headers, "ETag": f'"{sha256}"'})
    log.error("web_blob_missing", sha256=sha256, **about)
    return None


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """`attachment` with the original name (RFC 6266: an ASCII fallback and filename*);
    `inline` for the raster images shown on the page (INLINE_IMAGE_TYPES, sent with their own
    type and nosniff), so that a click on one opens it at full size."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in filename) or "file"  # fmt: skip
    quoted = urllib.parse.quote(filename, safe="")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


# --- writing --------------------------------------------------------------------------------


async def _read_uploads(form: FormData, limit: int) -> tuple[list[_Upload], str | None]:
    """The form's files (empty file inputs skipped), or the catalogue key of why not."""
    files = [f for f in form.getlist("attachments") if isinstance(f, UploadFile)]
    uploads: list[_Upload] = []
    total = 0
    chosen = [f for f in files if f.filename or (f.size or 0) > 0]
    if len(chosen) > MAX_FILES:
        return [], "error.too_many_files"
    for index, f in enumerate(chosen, start=1):
        data = await f.read()
        total += len(data)
        if total > limit:
            return [], "error.too_big"
        name = safe_filename(f.filename or "", fallback=f"file-{index}.bin")
        uploads.append(_Upload(name, _content_type(f.content_type, name), data))
    return uploads, None


def _content_type(declared: str | None, name: str) -> str:
    value = (declared or "").split(";")[0].strip().lower()
    if _CONTENT_TYPE.fullmatch(value) and value != "application/octet-stream":
        return value
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


async def _store_files(web: Web, uploads: list[_Upload]) -> tuple[AttachmentView, ...]:
    if not uploads:
        return ()
    blobs = await asyncio.to_thread(web.blobs.put_all, [u.data for u in uploads], defer_sync=True)
    return tuple(
        AttachmentView(u.filename, u.content_type, b.size, b.sha256, None)
        for u, b in zip(uploads, blobs, strict=True)
    )


async def new_ticket(request: Request) -> Response:
    who = await visitor(request)
    gate = _gate(request, who)
    if gate is not None:
        return gate
    assert who.me is not None
    web = _web(request)
    limits = _limits(web, who)
    supported = _supported(web, who.me)
    if request.method == "GET":
        return page(request, who, "new.html", error=None, subject="", body="", limits=limits,
                    supported=supported)  # fmt: skip
    form = await posted_form(request, who, max_files=1000)
    subject = _subject(str(form.get("subject") or ""))
    body = _text(str(form.get("body") or ""))
    if not supported:
        return page(request, who, "new.html", status=403, error=None, subject=subject,
                    body=body, limits=limits, supported=False)  # fmt: skip
    uploads, error = await _read_uploads(form, web.config.smtp.max_message_bytes)
    if error is None and not subject:
        error = "error.required"
    if error is None and not body.strip() and not uploads:
        error = "error.empty"
    if error is not None:
        status = 413 if error.startswith("error.too") else 400
        return page(request, who, "new.html", status=status, error=error, subject=subject,
                    body=body, limits=limits, supported=True)  # fmt: skip
    posted = await _post(web, who.me, None, subject, body, uploads)
    if posted.ticket is None:
        return page(request, who, "new.html", status=403, error=None, subject=subject,
                    body=body, limits=limits, supported=False)  # fmt: skip
    return redirect(request, who, f"/tickets/{posted.ticket}", done="created")


async def _post(
    web: Web, me: Identity, number: int | None, subject: str, body: str, uploads: list[_Upload]
) -> Posted:
    files = await _store_files(web, uploads)
    now = web.clock()
    desk = web.desk()
    posted = await web.store.write(
        lambda conn: post_article(
            conn, config=web.config, desk=desk, ids=web.ids, email=me.email, number=number,
            subject=subject, body=body, files=files, now=now,
        ),
        flush=web.blobs.sync,
    )  # fmt: skip
    if posted.queued:
        web.queued()
    return posted


async def reply(request: Request) -> Response:
    who = await visitor(request)
    gate = _gate(request, who)
    if gate is not None:
        return gate
    assert who.me is not None
    web = _web(request)
    number: int = request.path_params["number"]
    form = await posted_form(request, who, max_files=1000)
    ref = await web.reader(accounts.ticket_page, who.me.customer.number, number)
    if ref is None:
        return not_found(request, who)
    if ref.ticket.status == MERGED:  # read-only: nothing is posted on it
        return await _to_target(request, who, number)
    body = _text(str(form.get("body") or ""))
    if not _supported(web, who.me):
        return await _show(request, who, status=403, error=None)
    uploads, error = await _read_uploads(form, web.config.smtp.max_message_bytes)
    if error is None and not body.strip() and not uploads:
        error = "error.empty"
    if error is not None:
        status = 413 if error.startswith("error.too") else 400
        return await _show(request, who, status=status, error=error, body=body)
    posted = await _post(web, who.me, number, ref.ticket.subject, body, uploads)
    if posted.outcome == "not_found":
        return not_found(request, who)
    if posted.ticket is None:
        return await _show(request, who, status=403, error=None)
    return redirect(request, who, f"/tickets/{posted.ticket}", done="answered")


async def _status(request: Request, status: str) -> Response:
    who = await visitor(request)
    gate = _gate(request, who)
    if gate is not None:
        return gate
    await posted_form(request, who)
    assert who.me is not None
    web = _web(request)
    me = who.me
    if not _supported(web, me):  # SPEC 8.4: under a lapsed contract every write is refused
        log.info("web_write_refused", reason="no_contract", by=me.email, status=status)
        return await _show(request, who, status=403, error=None)
    number: int = request.path_params["number"]
    now = web.clock()
    outcome = await web.store.write(
        lambda conn: set_status(
            conn, config=web.config, desk=web.desk(), ids=web.ids,
            user=User(me.email, me.name, me.lang, me.customer), number=number, status=status,
            now=now,
        )
    )  # fmt: skip
    if outcome == "not_found":
        return not_found(request, who)
    if outcome == "merged":
        return await _to_target(request, who, number)
    if outcome == "too_late":
        return await _show(request, who, status=409, error="ticket.reopen_too_late")
    if outcome == "done":
        web.queued()  # the owner's (else the agents') notification
    done = "closed" if status == "closed" else "reopened"
    return redirect(request, who, f"/tickets/{number}", done=done)


def _subject(typed: str) -> str:
    return " ".join(typed.split())[:MAX_SUBJECT]


def _text(typed: str) -> str:
    return typed[:MAX_BODY].replace("\r\n", "\n")


async def refused(request: Request, who: Visitor, refusal: Refusal) -> Response | None:
    """A new-ticket or reply form refused for its size, its files or an expired token, shown
    again with the text typed into it and the line saying why (SPEC 8.4); None for others."""
    if who.me is None or who.me.pending:
        return None
    web = _web(request)
    body = _text(refusal.text("body"))
    if request.url.path == "/tickets/new":
        return page(
            request, who, "new.html", status=refusal.status, error=refusal.error,
            subject=_subject(refusal.text("subject")), body=body, limits=_limits(web, who),
            supported=_supported(web, who.me),
        )  # fmt: skip
    if request.url.path.endswith("/reply") and "number" in request.path_params:
        return await _show(request, who, status=refusal.status, error=refusal.error, body=body)
    return None


async def close(request: Request) -> Response:
    return await _status(request, "closed")


async def reopen(request: Request) -> Response:
    return await _status(request, "open")


ROUTES = [
    route("/tickets", tickets, "GET"),
    route("/tickets/new", new_ticket, "GET", "POST"),
    route("/tickets/{number:int}", show, "GET"),
    route("/tickets/{number:int}/reply", reply, "POST"),
    route("/tickets/{number:int}/close", close, "POST"),
    route("/tickets/{number:int}/reopen", reopen, "POST"),
    route("/tickets/{number:int}/files/{file:int}", download, "GET"),
]
