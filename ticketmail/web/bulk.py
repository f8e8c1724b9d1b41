"""The queue's bulk actions (SPEC 9.1, `POST /desk/bulk`): one action on several tickets of
the queue, each ticket checked against the version the queue showed (`seen_{number}`) in
the write job that changes it. Only agents reach it; the route is listed in web/desk.py.

The actions are a table (`ACTIONS`): an action reads its own fields and gives what it does
to one ticket; the queue's chooser offers every action of the table."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.errors import NotFoundError
from ticketmail.models import SETTABLE_STATUSES
from ticketmail.storage import desk as desk_db
from ticketmail.storage.desk import DeskAgent
from ticketmail.storage.dialect import Conn
from ticketmail.storage.merge import MergeRefused, merge_ticket
from ticketmail.web.base import Visitor, Web, page, posted_form, redirect
from ticketmail.web.changes import NoSuchAgent, owner_job, status_job

__all__ = ["ACTIONS", "MAX_FIELDS", "MAX_TICKETS", "Chooser", "act", "chooser"]

log = structlog.get_logger()

MAX_TICKETS = 100  # tickets in one bulk action (a queue page lists 50)
MAX_FIELDS = 2 * MAX_TICKETS + 10  # each ticket and its seen_, the action's few fields
SPEC_ACTIONS = ("assign", "status", "merge")  # SPEC 9.1's names of the bulk actions
_QUEUE_KEYS = ("status", "customer", "assignee", "q", "page", "sort")  # the queue's own query


class Bad(Exception):
    """Bad input: nothing was changed; `key` is the catalogue line saying why, `status` the
    answer's (400; 409 for a merge across institutions, SPEC 9.1)."""

    def __init__(self, key: str, *, status: int = 400, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.status = status
        self.values = values


@dataclass(frozen=True, slots=True)
class Change:
    """What an action did to one ticket: False when the ticket already was so (it is
    unchanged, nobody is mailed)."""

    changed: bool


# What an action does to one ticket, inside the write job that checked its version.
TicketAct = Callable[[Conn, int], Change]
# An action: reads its own fields from the form (raises Bad) and gives its TicketAct.
Action = Callable[[Web, DeskAgent, FormData, datetime], Awaitable[TicketAct]]


async def _assign(web: Web, agent: DeskAgent, form: FormData, now: datetime) -> TicketAct:
    """`agent`: the new owner (empty: nobody), mailed as the ticket's owner form does."""
    chosen = str(form.get("agent") or "").strip().casefold() or None
    if chosen is not None and await web.reader(desk_db.agent_of, chosen) is None:
        raise Bad("desk.bulk_no_such_agent")

    def one(conn: Conn, number: int) -> Change:
        change = owner_job(web, agent, number, chosen, now=now)(conn)
        return Change(change is not None and change.changed)

    return one


async def _status(web: Web, agent: DeskAgent, form: FormData, now: datetime) -> TicketAct:
    """`status`: set as the ticket's status form does (without a note): each customer of a
    changed ticket is mailed once."""
    status = str(form.get("status") or "")
    if status not in SETTABLE_STATUSES or status == "waiting":  # waiting needs its own time
        raise Bad("desk.bulk_bad_status")

    def one(conn: Conn, number: int) -> Change:
        result = status_job(web, agent, number, status=status, note="", now=now)(conn)
        return Change(result.old_status != result.status)

    return one


async def _merge(web: Web, agent: DeskAgent, form: FormData, now: datetime) -> TicketAct:
    """`into`: every ticked ticket merged into that one, as its own merge form would; the
    target itself, if ticked, stays as it is. One refusal (two institutions, a merged
    target or source) refuses the whole action: nothing is merged."""
    into = _number(str(form.get("into") or "").lstrip("#"))
    if into is None:
        raise Bad("desk.merge_no_number")

    def one(conn: Conn, number: int) -> Change:
        if number == into:
            return Change(False)
        try:
            merge_ticket(conn, number, into, by=agent.email, now=now)
        except MergeRefused as exc:
            status = 409 if exc.reason == "institutions" else 400
            raise Bad(f"desk.merge_{exc.reason}", status=status) from exc
        except NotFoundError as exc:
            raise Bad("desk.merge_missing") from exc
        return Change(True)

    return one


ACTIONS: Mapping[str, Action] = {"assign": _assign, "status": _status, "merge": _merge}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The tickets of a bulk action: changed, already so, and skipped (changed since the
    queue was loaded)."""

    done: tuple[int, ...]
    same: tuple[int, ...]
    skipped: tuple[int, ...]


def _number(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None


def _chosen(form: FormData) -> tuple[tuple[int, int], ...]:
    """The ticked tickets with the version the queue showed of each (raises Bad)."""
    raw = [str(v) for v in form.getlist("tickets")]
    if not raw:
        raise Bad("desk.bulk_none")
    if len(raw) > MAX_TICKETS:
        raise Bad("desk.bulk_too_many", count=MAX_TICKETS)
    numbers = [_number(v) for v in raw]
    wrong = [v for v, n in zip(raw, numbers, strict=True) if n is None]
    if wrong:
        raise Bad("desk.bulk_not_a_ticket", numbers=", ".join(w[:20] for w in wrong[:5]))
    chosen = tuple(dict.fromkeys(n for n in numbers if n is not None))
    seen = {n: _number(str(form.get(f"seen_{n}") or "")) for n in chosen}
    unseen = [str(n) for n, s in seen.items() if s is None]
    if unseen:
        raise Bad("desk.bulk_unseen", numbers=", ".join(unseen))
    return tuple((n, s) for n, s in seen.items() if s is not None)


def _job(tickets: tuple[tuple[int, int], ...], one: TicketAct) -> Callable[[Conn], Outcome]:
    """One write job: each ticket acted on only if it still has the version the queue
    showed, else skipped; a number that is no ticket undoes it all (raises Bad)."""

    def job(conn: Conn) -> Outcome:
        done: list[int] = []
        same: list[int] = []
        skipped: list[int] = []
        missing: list[int] = []
        for number, seen in tickets:
            refused = desk_db.refusal(conn, number, seen=seen, force=False)
            if refused == "missing":
                missing.append(number)
            elif refused is not None:
                skipped.append(number)
            elif not missing:
                (done if one(conn, number).changed else same).append(number)
        if missing:
            raise Bad("desk.bulk_not_a_ticket", numbers=", ".join(map(str, missing)))
        return Outcome(tuple(done), tuple(same), tuple(skipped))

    return job


def _back(form: FormData) -> str:
    """The queue page the form came from (its filters and page), never another path."""
    parts = urllib.parse.urlsplit(str(form.get("back") or "")[:2000])
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k in _QUEUE_KEYS]
    return "/desk?" + urllib.parse.urlencode(query) if query else "/desk"


def _page(
    request: Request, who: Visitor, *, status: int, back: str, error: Bad | None = None,
    outcome: Outcome | None = None,
) -> Response:  # fmt: skip
    return page(request, who, "desk_bulk.html", status=status, back=back, error=error,
                outcome=outcome)  # fmt: skip


async def act(request: Request, who: Visitor, agent: DeskAgent) -> Response:
    """POST /desk/bulk: 303 back to the queue saying how many changed, 409 naming the
    tickets skipped (and what was done), 400 with a line for bad input."""
    web: Web = request.app.state.web
    form = await posted_form(request, who, max_fields=MAX_FIELDS)
    back = _back(form)
    name = str(form.get("action") or "")
    try:
        action = ACTIONS.get(name)
        if action is None:
            raise Bad("desk.bulk_unavailable" if name in SPEC_ACTIONS else "desk.bulk_no_action")
        tickets = _chosen(form)
        one = await action(web, agent, form, web.clock())
        outcome = await web.store.write(_job(tickets, one))
    except NoSuchAgent:  # removed since the form was read
        return await _refuse(request, who, agent, back, name, Bad("desk.bulk_no_such_agent"))
    except Bad as bad:
        return await _refuse(request, who, agent, back, name, bad)
    if outcome.done:
        web.queued()
    log.info("desk_bulk", action=name, agent=agent.email, done=list(outcome.done),
             unchanged=list(outcome.same), skipped=list(outcome.skipped))  # fmt: skip
    if outcome.skipped:
        return _page(request, who, status=409, back=back, outcome=outcome)
    counts = urllib.parse.urlencode({"changed": len(outcome.done), "same": len(outcome.same)})
    return redirect(request, who, f"{back}{'&' if '?' in back else '?'}{counts}")


async def _refuse(
    request: Request, who: Visitor, agent: DeskAgent, back: str, name: str, bad: Bad
) -> Response:
    log.info("desk_bulk_refused", action=name[:20], agent=agent.email, reason=bad.key)
    return _page(request, who, status=bad.status, back=back, error=bad)


@dataclass(frozen=True, slots=True)
class Chooser:
    """What the queue page shows of bulk actions: the actions its chooser offers, the most
    tickets at once, and the line after one was done (None: none was)."""

    actions: tuple[str, ...]
    most: int
    changed: int | None
    same: int


def chooser(query: Mapping[str, str]) -> Chooser:
    """The queue's chooser; `changed` and `same` come in the query of the 303 after a bulk
    action."""
    changed, same = _number(query.get("changed", "")), _number(query.get("same", ""))
    return Chooser(tuple(ACTIONS), MAX_TICKETS, changed, same or 0)
