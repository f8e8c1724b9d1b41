"""The desk's queue sorted by its column headers, over real HTTP against the real daemon
(issue 24): `sort=` by number, activity, status and institution in either direction the
headers offer, an unknown order falling back to the newest activity first, the filters kept
in every link of the page and in the bulk form's way back, names shown instead of addresses."""

from __future__ import annotations

import html
import re
import urllib.parse

import pytest
from conftest import Env, make_mail
from test_desk import MAX, agent_client, queued_numbers, web_env
from web_support import ANNA, Client

pytestmark = pytest.mark.web  # the daemon serves the desk

CARL = "carl@real.example"


async def four_tickets(env_factory, sink) -> tuple[Env, Client]:  # type: ignore[no-untyped-def]
    """Anna opens 100001-100003 (10042), Carl 100004 (20001), 5 s apart; then an agent
    closes 100002 and Anna writes to 100001 again (its activity the newest): numbers,
    activity and status each give another order."""
    env = await web_env(env_factory, sink)
    for sender, subject in ((ANNA, "Drucker"), (ANNA, "Beamer"), (ANNA, "WLAN"), (CARL, "Tablet")):
        assert (await env.send(make_mail(sender, subject, "Bitte helfen.\n")))[0] == 250
        env.clock.advance(seconds=5)
    client = await agent_client(env, MAX)
    queue = await client.get("/desk")
    seen = re.findall(r'name="seen_100002" value="(\d+)"', queue.text)[0]
    closed = await client.post("/desk/tickets/100002/status", {"status": "closed", "seen": seen})
    assert closed.status_code == 303, closed.text
    env.clock.advance(seconds=5)
    assert (await env.send(make_mail(ANNA, "Re: [Ticket#100001] Drucker", "Noch da.\n")))[0] == 250
    env.clock.advance(seconds=5)
    return env, client


def query_of(link: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))


async def order(client: Client, query: str) -> list[int]:
    page = await client.get(f"/desk?{query}")
    assert page.status_code == 200, page.text
    assert "Traceback" not in page.text
    return queued_numbers(page)


async def test_sort_by_number_activity_status_and_institution(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """sort=number starts with the lowest number and -number with the highest; activity is
    the oldest first and the default newest first; status groups by the status's code (z to
    a) and customer by the institution's (a to z), newest activity first within; an unknown
    sort is the default."""
    env, client = await four_tickets(env_factory, sink)
    newest_first = [100001, 100002, 100004, 100003]  # 100001 written to, 100002 closed
    statuses = {n: (await env.cli_json("ticket", "show", str(n)))["status"] for n in newest_first}
    assert statuses[100002] == "closed"
    assert statuses[100001] != "closed"
    assert await order(client, "") == newest_first
    assert await order(client, "sort=-activity") == newest_first
    assert await order(client, "sort=activity") == newest_first[::-1]
    assert await order(client, "sort=number") == [100001, 100002, 100003, 100004]
    assert await order(client, "sort=-number") == [100004, 100003, 100002, 100001]
    # by the status's code from z to a (waiting, open, new, closed, answered), newest first within
    by_status = sorted(newest_first, key=lambda n: statuses[n], reverse=True)
    assert await order(client, "sort=status") == by_status
    assert by_status.index(100002) == 3  # "closed" after "open" and "new"
    assert await order(client, "sort=customer") == [100001, 100002, 100003, 100004]
    for unknown in ("bogus", "number;DROP TABLE tickets", "-status", "", "NUMBER"):
        assert await order(client, "sort=" + urllib.parse.quote(unknown)) == newest_first


async def test_headers_toggle_the_sort_and_every_link_keeps_the_filters(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The sorted column's header says so (aria-sort) and links the other direction; the
    header links, status counts, pages and the bulk form's way back keep every filter and
    the sort, and a bulk action returns to the queue sorted as it was."""
    _, client = await four_tickets(env_factory, sink)
    filters = {"customer": "10042", "assignee": "none", "q": "Bitte", "sort": "number"}
    page = await client.get("/desk?" + urllib.parse.urlencode(filters))
    assert page.status_code == 200
    assert queued_numbers(page) == [100001, 100002, 100003]
    sorted_th = re.findall(r'<th scope="col" class="col-(\w+)" aria-sort="(\w+)"><a href="([^"]+)"',
                           page.text)  # fmt: skip
    assert [(c, a) for c, a, _ in sorted_th] == [("number", "ascending")]
    links = [html.unescape(h) for h in re.findall(r'href="(/desk\?[^"]*)"', page.text)]
    headers = re.findall(r'class="col-(\w+)"[^>]*><a href="([^"]+)"', page.text)
    assert {c for c, _ in headers} == {"number", "status", "customer", "activity"}
    assert len(links) >= 4 + 4  # the headers, the status counts
    for link in links:
        query = query_of(link)
        for key in ("customer", "assignee", "q"):
            assert query.get(key) == filters[key], link
        assert "sort" in query, link
    other = html.unescape(sorted_th[0][2])
    assert query_of(other)["sort"] == "-number"
    descending = await client.get(other)
    assert queued_numbers(descending) == [100003, 100002, 100001]
    assert 'class="col-number" aria-sort="descending"' in descending.text
    back = re.search(r'name="back" value="([^"]+)"', page.text)
    assert back is not None
    kept = html.unescape(back.group(1))
    assert query_of(kept) == {**filters, "page": "1"}
    seen = re.findall(r'name="seen_100003" value="(\d+)"', page.text)[0]
    data = {"csrf_token": client.csrf, "back": kept, "tickets": "100003", "action": "assign",
            "agent": MAX, "seen_100003": seen}  # fmt: skip
    done = await client.http.post("/desk/bulk", data=data)
    assert done.status_code == 303, done.text
    returned = query_of(done.headers["location"])
    assert returned["sort"] == "number"
    assert {k: returned[k] for k in filters} == filters


async def test_the_queue_shows_names_with_the_address_in_a_title(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The requester is shown by the user's name (the address only in a title), the owner
    by the agent's name; a requester without a user name is shown by the address."""
    env, client = await four_tickets(env_factory, sink)
    await env.user("gast@schule.example", "10042")  # a user without a name
    assert (await env.send(make_mail("gast@schule.example", "Ohne Namen", "Hallo.\n")))[0] == 250
    data = await client.get("/desk")
    seen = re.findall(r'name="seen_100001" value="(\d+)"', data.text)[0]
    taken = await client.post("/desk/tickets/100001/assign", {"agent": MAX, "seen": seen})
    assert taken.status_code in (200, 303), taken.text
    page = await client.get("/desk")
    body = page.text[page.text.index("<tbody>") : page.text.index("</tbody>")]
    assert '<span class="who" title="anna@schule.example">Anna Müller</span>' in body
    assert '<span class="who" title="max@stueber.de">Max Berger</span>' in body
    assert '<span class="who" title="carl@real.example">Carl Krause</span>' in body
    without_titles = re.sub(r'title="[^"]*"', "", body)
    for address in (ANNA, MAX, CARL):
        assert address not in re.sub(r"(value|name)=\"[^\"]*\"", "", without_titles), address
    stranger = re.search(r'title="gast@schule.example">([^<]+)<', body)
    assert stranger is not None
    assert stranger.group(1) == "gast@schule.example"
