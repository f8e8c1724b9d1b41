"""What the desk's status and owner forms do to one ticket, as a part of the write job that
checked its version (SPEC 9.1): shared by a ticket's own forms (web/desk.py) and the
queue's bulk actions (web/bulk.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from ticketmail.errors import NotFoundError, TicketmailError
from ticketmail.models import TicketRef
from ticketmail.outbound.actions import DeskResult, Origin
from ticketmail.outbound.agents import assigned
from ticketmail.storage import desk as desk_db
from ticketmail.storage.desk import DeskAgent
from ticketmail.storage.dialect import Conn
from ticketmail.storage.tickets import ticket_ref
from ticketmail.web.base import Web

__all__ = ["RECENT", "NoSuchAgent", "desk_job", "owner_job", "status_job"]

RECENT = timedelta(hours=1)  # the window the rate limits count in


def desk_job(
    number: int, since: datetime, act: Callable[[Conn, TicketRef], DeskResult]
) -> Callable[[Conn], DeskResult]:
    """An answer or status change of the Desk on ticket `number`, the way `ticket reply`
    and `ticket status` do: the ticket, its article and its mails in one write job."""

    def job(conn: Conn) -> DeskResult:
        ticket = ticket_ref(conn, number, since=since)
        assert ticket is not None  # the version check found it in this job
        return act(conn, ticket)

    return job


def status_job(
    web: Web, agent: DeskAgent, number: int, *, status: str, note: str, now: datetime,
    until: datetime | None = None,
) -> Callable[[Conn], DeskResult]:  # fmt: skip
    """Agent `agent` sets ticket `number`'s status (with a `note`, mailed; `until` for
    waiting), as the ticket's status form does: a write job's part, after the ticket's
    version was checked."""
    origin = Origin(actor=agent.email, agent_name=agent.name)
    desk = web.desk()

    def act(conn: Conn, ticket: TicketRef) -> DeskResult:
        return desk.change_status(conn, ticket, status=status, note=note, origin=origin,
                                  now=now, until=until)  # fmt: skip

    return desk_job(number, now - RECENT, act)


class NoSuchAgent(TicketmailError):
    """An owner who is no agent: nothing changed."""


def owner_job(
    web: Web, agent: DeskAgent, number: int, chosen: str | None, *, now: datetime
) -> Callable[[Conn], desk_db.OwnerChange | None]:
    """Agent `agent` makes `chosen` (None: nobody) ticket `number`'s owner, as the ticket's
    owner form does, the new owner mailed: a write job's part, after the ticket's version
    was checked. Raises NoSuchAgent (the job rolls back) for an owner who is no agent."""
    desk = web.desk()

    def act(conn: Conn) -> desk_db.OwnerChange | None:
        try:
            change = desk_db.set_owner(conn, number, chosen, by=agent.email, now=now)
        except NotFoundError:
            raise NoSuchAgent from None
        if change is not None and change.changed and chosen is not None:
            assigned(conn, number, owner=chosen, by=agent, config=web.config,
                     templates=desk.templates, ids=web.ids, now=now)  # fmt: skip
        return change

    return act
