"""The institution boundary of the portal (SPEC 8.1, 8.3): a ticket of another institution is
404 like a missing one, for every page, file and action, and never listed or found."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_support import ANNA, PASSWORD, Client, logged_in, png

from ticketmail.storage import accounts
from ticketmail.web.security import hash_password

CARL = "carl@real.example"
_TOKEN = re.compile(r"[0-9a-f]{64}")
_HASH = hash_password(PASSWORD)  # once: every user of the property test has this password
_RUN = itertools.count(1)

pytestmark = pytest.mark.web  # the daemon serves the portal


async def new_ticket(client: Client, subject: str, *, with_file: bool = True) -> int:
    files = [("attachments", ("shot.png", png(seed=len(subject)), "image/png"))]
    response = await client.post(
        "/tickets/new", {"subject": subject, "body": f"Text zu {subject}"},
        files=files if with_file else None, form_page="/tickets/new",
    )  # fmt: skip
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def results(page: Any) -> str:
    """A list page below its filter form (which echoes the search words)."""
    return str(page.text.split('role="search"', 1)[1].split("</form>", 1)[1])


async def state(env: Env) -> Any:
    """Every ticket with its status and articles, as the CLI shows them."""
    tickets = await env.cli_json("ticket", "list")
    return sorted((t["number"], t["status"], t["articles"], t["updated_at"]) for t in tickets)


async def first_file(env: Env, customer: str, number: int) -> int:
    assert env.daemon.store is not None
    view = await env.daemon.store.write(lambda c: accounts.ticket_page(c, customer, number))
    assert view is not None
    return next(f.id for a in view.articles for f in a.attachments)


async def test_another_institutions_ticket_is_404_everywhere(env: Env) -> None:
    """Carl (another institution) gets 404 for Anna's ticket page, its file, reply, close and
    reopen, exactly as for a ticket that does not exist; lists and search never show it."""
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user(CARL, "20001", name="Carl Krause", lang="de")
    anna = await logged_in(env, ANNA)
    number = await new_ticket(anna, "Geheimsache Zeugnisdruck")
    file_id = await first_file(env, "10042", number)
    carl = await logged_in(env, CARL)
    before = await state(env)
    missing = 999999

    async def both(method: str, template: str) -> tuple[Any, Any]:
        answers = []
        for n in (number, missing):
            path = template.format(n=n, f=file_id)
            if method == "GET":
                answers.append(await carl.get(path))
            else:
                await carl.get("/tickets")
                answers.append(await carl.post(path, {"body": "Übernahme!"}))
        return answers[0], answers[1]

    for method, template in (
        ("GET", "/tickets/{n}"),
        ("GET", "/tickets/{n}/files/{f}"),
        ("POST", "/tickets/{n}/reply"),
        ("POST", "/tickets/{n}/close"),
        ("POST", "/tickets/{n}/reopen"),
    ):
        theirs, nobodys = await both(method, template)
        assert theirs.status_code == 404, template
        assert _TOKEN.sub("", theirs.text) == _TOKEN.sub("", nobodys.text), template
    assert await state(env) == before
    for query in ("", "?q=Geheimsache", f"?q={number}", "?status=new", "?mine=1"):
        page = await carl.get("/tickets" + query)
        assert page.status_code == 200
        assert "Geheimsache" not in results(page)
        assert f"/tickets/{number}" not in page.text
    assert (await anna.get(f"/tickets/{number}/files/{file_id}")).status_code == 200


@dataclass(frozen=True)
class Plan:
    institutions: int
    users: tuple[int, ...]  # the institution of each user
    tickets: tuple[int, ...]  # the user who opens each ticket
    actions: tuple[tuple[int, int, str], ...]  # (user, ticket, action)


ACTIONS = ("view", "file", "reply", "close", "reopen", "list", "search")


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    institutions = draw(st.integers(2, 3))
    users = tuple(draw(st.lists(st.integers(0, institutions - 1), min_size=2, max_size=4)))
    tickets = tuple(draw(st.lists(st.integers(0, len(users) - 1), min_size=1, max_size=3)))
    actions = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(users) - 1),
                    st.integers(0, len(tickets) - 1),
                    st.sampled_from(ACTIONS),
                ),
                min_size=1,
                max_size=8,
            )
        )
    )
    return Plan(institutions, users, tickets, actions)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans())
async def test_no_page_download_or_action_crosses_institutions(env: Env, plan: Plan) -> None:
    """Over random institutions, users, tickets and actions: whatever a user of one
    institution asks of another's ticket is 404 and changes nothing; its lists and searches
    never show another institution's ticket."""
    run = next(_RUN)
    assert env.daemon.store is not None
    customers = [f"7{run:03d}{i}" for i in range(plan.institutions)]
    for i, number in enumerate(customers):
        await env.customer(number, f"Schule {run}-{i}")
    emails = [f"u{run}x{i}@inst{plan.users[i]}.example" for i in range(len(plan.users))]
    for email, inst in zip(emails, plan.users, strict=True):
        await env.user(email, customers[inst], name=email)
        await env.daemon.store.write(
            lambda c, e=email: accounts.set_password(c, e, _HASH, now=env.clock())
        )
    clients: list[Client] = []
    for email in emails:
        client = Client(env)
        assert (await client.login(email)).status_code == 303
        clients.append(client)
    numbers: list[int] = []
    subjects: list[str] = []
    for t, user in enumerate(plan.tickets):
        subject = f"Marke{run}x{t}x{plan.users[user]}"
        numbers.append(await new_ticket(clients[user], subject, with_file=t % 2 == 0))
        subjects.append(subject)
    files = {
        t: await first_file(env, customers[plan.users[plan.tickets[t]]], numbers[t])
        for t in range(len(numbers))
        if t % 2 == 0
    }
    for user, t, action in plan.actions:
        client, number = clients[user], numbers[t]
        mine = plan.users[user]
        owner = plan.users[plan.tickets[t]]
        if action in ("list", "search"):
            query = {"q": subjects[t]} if action == "search" else {}
            page = await client.get("/tickets", params=query)
            assert page.status_code == 200
            for other, (n, s) in enumerate(zip(numbers, subjects, strict=True)):
                if plan.users[plan.tickets[other]] != mine:
                    assert s not in results(page)
                    assert f"/tickets/{n}" not in page.text
            continue
        before = await state(env)
        if action == "view":
            response = await client.get(f"/tickets/{number}")
        elif action == "file":
            file_id = files.get(t, 1)
            response = await client.get(f"/tickets/{number}/files/{file_id}")
        else:
            await client.get("/tickets")
            response = await client.post(f"/tickets/{number}/{action}", {"body": "Antwort"})
        if owner != mine:
            assert response.status_code == 404, (action, response.status_code)
            for s in subjects:
                assert s not in response.text
            assert await state(env) == before
        else:
            assert response.status_code in (200, 303, 404, 409), (action, response.status_code)
            if action == "file" and t in files:
                assert response.status_code == 200
