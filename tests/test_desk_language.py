"""No English word in the German desk, and no German word in the English one (SPEC 9.1): an
agent with German settings and one with English walk every desk page of PAGES (the queue
with filters, search and no result, a ticket page, its 409 after a stale form, every action's
landing page, every error line) against the real daemon, with data that shows everything;
the agent mails are rendered in both languages and read with the same word lists.

What is read: the visible text (tags, scripts, styles and `<code>` left out) and the
`title`, `placeholder`, `aria-label`, `alt`, `data-label` attributes and the `value` of
buttons. Not read, as no language's words: mail addresses and URLs (data), the placeholder
syntax `{{ ... }}` of text modules and the mail command `#status closed` (typed literally),
and elements marked with another `lang` (a language's own name in the language choice).
All seeded content (names, subjects, texts) is made of neutral words ("Lumo", numbers).

Loanwords both languages use are on neither list: Ticket(s), Status, Support, Desk, Portal,
Team, Name, Text, Mail, Domains, Agent, Cc, UTC; nor words both languages spell alike (in,
an, am, so, was, die, will, man)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Env, make_mail
from desk_support import settle
from test_desk import MAX, MIA, agents, queued_numbers
from web_support import PASSWORD, Client, link_in, logged_in, next_mail_to

from ticketmail.models import CUSTOMER_STATUSES, SETTABLE_STATUSES
from ticketmail.outbound.compose import AGENT_TEMPLATE_NAMES, Templates, sample_context
from ticketmail.web.i18n import CATALOGUES, LANGUAGES

KIM = "kim@lyceum.example"
EDA = "eda@beta.example"  # of the other institution
TICKET = "/desk/tickets/100001"

# Words that betray an English string on a German page (compared in lower case).
ENGLISH = frozenset(
    """
the and or of to is are were be been it its this that these with for from by at on as
if then when what who which here there not no none nobody me my you your yours please must
new open opened closed close answered answer answers reply replies owner note notes assign
assigned save saved search queue settings setting customer customers institution
institutions approve approved reject rejected delete deleted send sent history headers raw
message messages subject date changed change since waiting until merged merge phone number
page previous next filter any all only user users registered registration registrations
contract trial other others automatic progress files file download attachments language
module modules title log logout skip content channel email error found back request
required field fill empty such there add added allowed placeholders afterwards nothing
done typed below again choose check loaded form into put yet taken call given address
addresses english german
""".split()  # noqa: SIM905 - a word list reads best as text
)

# Words that betray a German string on an English page; besides, any word with ä, ö, ü, ß.
GERMAN = frozenset(
    """
und oder der das den dem des ein eine einen einer nicht kein keine keinen ist sind wird
wurde mit für von zu zum zur auf bei nur noch alle neu neues neue offen geschlossen
beantwortet bearbeitung antwort antworten notiz speichern gespeichert suche zuständig
niemand ich einrichtung einrichtungen kunde kunden kundennummer seite zurück weiter
warteschlange einstellungen registrierungen registriert freigeben ablehnen löschen
textbaustein textbausteine telefon telefonnummer verlauf betreff datum kopfzeilen wartet
ändern zuweisen zuständigkeit vertrag testphase benutzer abmelden automatisch dateien
herunterladen fehler bitte sie ihre ihr filtern nummer letzte aktivität senden setzen
hinweis danach deutsch englisch sprache titel zusammengeführt seitdem geändert kanal
aufgenommen hallo im jjjj tt anlegen angeben gibt diese dieser diesen dieses adresse
eingang nichts wurden hat haben geschrieben eröffnet zugewiesen lassen erstellt wer
""".split()  # noqa: SIM905 - a word list reads best as text
)

_SKIP = frozenset({"script", "style", "code"})
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)
_READ = ("title", "placeholder", "aria-label", "alt", "data-label")
_DATA = re.compile(r"https?://\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\{\{.*?\}\}|\{%.*?%\}|#status \w+")
_WORD = re.compile(r"[^\W\d_]+")


class _Reader(HTMLParser):
    """The text a reader of the page meets, in the page's language (see the docstring)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang = ""
        self.parts: list[str] = []
        self._open: list[tuple[str, bool]] = []  # open elements: is their content left out?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = values.get("lang", "")
            return
        own = bool(values.get("lang")) and values.get("lang") != self.lang
        hidden = tag in _SKIP or own or values.get("translate") == "no" or self._hidden()
        if tag not in _VOID:
            self._open.append((tag, hidden))
        if hidden:
            return
        self.parts += [values[a] for a in _READ if a in values]
        if tag == "button" or values.get("type") in ("submit", "button"):
            self.parts.append(values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        """Closes the element and any left open inside it (a `<p>` without `</p>`)."""
        while tag not in _VOID and any(t == tag for t, _ in self._open):
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._hidden():
            self.parts.append(data)

    def _hidden(self) -> bool:
        return bool(self._open) and self._open[-1][1]


def foreign_words(text: str, lang: str) -> list[str]:
    """The words of `text` that belong to the other language than `lang`."""
    words = _WORD.findall(_DATA.sub(" ", text))
    if lang == "de":
        return [w for w in words if w.casefold() in ENGLISH]
    return [w for w in words if w.casefold() in GERMAN or re.search("[äöüß]", w.casefold())]


def page_leaks(html_text: str, lang: str) -> tuple[str, list[str]]:
    """(the page's own language, the other language's words it shows)."""
    reader = _Reader()
    reader.feed(html_text)
    return reader.lang, foreign_words(" ".join(reader.parts), lang)


@dataclass(frozen=True, slots=True)
class Page:
    """A desk page to read: GET `path`, or POST `form` to it from the form on `origin`
    (a 303 is followed to the page it leads to). `{me}`, `{lang}`, `{doomed}` are the
    walking agent's address, language and a text module of theirs to delete."""

    path: str
    status: int = 200
    form: Mapping[str, str] | None = None
    origin: str = ""
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = field(default=())


_NEW = {
    "requester": KIM,
    "subject": "Lumo 4712",
    "body": "Lumo 4712.",
    "channel": "phone",
    "confirm": "on",
}
_TEXT = {"title": "Lumo", "lang": "{lang}", "body": "Lumo 4711."}
_DAY = {"support_until": "2027-12-31", "trial_until": "", "domains": "lyceum.example"}
SOURCE = "/desk/tickets/{source}"  # the walking agent's own ticket to merge (100002, 100003)
BETA = "100004"  # a ticket of the other institution

# Every desk page, with the forms that lead to each line it can show. The merger adds the
# pages of merge, bulk actions, waiting and presence here.
PAGES: list[Page] = [
    # the queue
    Page("/desk"),
    Page("/desk?status=open"),
    Page("/desk?status=closed&assignee=none"),
    Page("/desk?assignee=me"),
    Page("/desk?assignee=none"),
    Page("/desk?customer=10042"),
    Page("/desk?q=Lumo"),
    Page("/desk?q=4711&status=answered"),
    Page("/desk?q=Qwxzv"),  # no result
    Page("/desk?page=2"),
    # one ticket, its actions and their refusals
    Page(TICKET),
    Page(f"{TICKET}?text=1"),  # a text module filled in
    Page(f"{TICKET}?text=999999", 200),  # a module that is gone
    Page(f"{TICKET}/note", 303, {"body": "Lumo 42."}, TICKET),
    Page(f"{TICKET}/note", 400, {"body": ""}, TICKET),
    Page(
        f"{TICKET}/reply",
        303,
        {"body": "Lumo 43.", "status": "answered"},
        TICKET,
        (("attachments", ("lumo.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")),),
    ),
    Page(f"{TICKET}/reply", 400, {"body": "", "status": "answered"}, TICKET),
    Page(f"{TICKET}/status", 303, {"status": "open", "note": ""}, TICKET),
    Page(f"{TICKET}/status", 400, {"status": "lumo"}, TICKET),
    Page(f"{TICKET}/assign", 303, {"agent": "{me}"}, TICKET),
    Page(f"{TICKET}/assign", 400, {"agent": "zed@stueber.de"}, TICKET),
    Page(f"{TICKET}/note", 409, {"body": "Lumo 44.", "seen": "1"}, TICKET),  # stale
    Page(f"{TICKET}/status", 409, {"status": "closed", "seen": "1"}, TICKET),
    Page(f"{TICKET}/assign", 409, {"agent": "", "seen": "1"}, TICKET),
    Page(f"{TICKET}/reply", 409, {"body": "Lumo 45.", "seen": "1"}, TICKET),
    Page(f"{TICKET}/reply", 409, {"body": "Lumo 45.", "seen": ""}, TICKET),  # no version
    Page("/desk/tickets/999999", 404),
    # waiting until a time, and every refusal of its time
    Page(f"{TICKET}/status", 400, {"status": "waiting", "until": ""}, TICKET),
    Page(f"{TICKET}/status", 400, {"status": "waiting", "until": "lumo"}, TICKET),
    Page(f"{TICKET}/status", 400, {"status": "waiting", "until": "2020-01-01T10:00"}, TICKET),
    Page(f"{TICKET}/status", 400, {"status": "waiting", "until": "2040-01-01T10:00"}, TICKET),
    Page(f"{TICKET}/status", 303, {"status": "waiting", "until": "2030-01-01T10:00"}, TICKET),
    Page(f"{TICKET}/status", 303, {"status": "waiting", "until": "2030-02-01T10:00"}, TICKET),
    Page("/desk?status=waiting"),
    Page(f"{TICKET}/status", 303, {"status": "open"}, TICKET),
    # merge: every refusal, a merge, the merged ticket's visits and forms
    Page(f"{TICKET}/merge", 400, {"into": ""}, TICKET),
    Page(f"{TICKET}/merge", 400, {"into": "100001"}, TICKET),
    Page(f"{TICKET}/merge", 400, {"into": "999999"}, TICKET),
    Page(f"{TICKET}/merge", 409, {"into": BETA}, TICKET),
    Page(f"{TICKET}/merge", 409, {"into": "{source}", "seen": "1"}, TICKET),
    Page(f"{SOURCE}/merge", 303, {"into": "100001"}, SOURCE),
    Page(SOURCE, 303),
    Page(f"{SOURCE}/note", 409, {"body": "Lumo 46."}, TICKET),
    Page(f"{SOURCE}/merge", 409, {"into": "100001"}, TICKET),
    Page(f"{TICKET}/merge", 409, {"into": "{source}"}, TICKET),
    Page("/desk?status=merged"),
    # bulk actions on the queue: every refusal, a skip, a change
    Page("/desk/bulk", 400, {"action": "assign", "agent": ""}, "/desk"),
    Page("/desk/bulk", 400, {"tickets": "100001"}, "/desk"),
    Page("/desk/bulk", 400, {"tickets": "100001", "action": "status", "status": "open"}, "/desk"),
    Page("/desk/bulk", 400, {"tickets": "lumo", "action": "status", "status": "open"}, "/desk"),
    Page(
        "/desk/bulk",
        400,
        {"tickets": "100001", "action": "status", "status": "lumo", "seen_100001": "{seen:100001}"},
        "/desk",
    ),
    Page(
        "/desk/bulk",
        400,
        {"tickets": "100001", "action": "assign", "agent": "zed@", "seen_100001": "{seen:100001}"},
        "/desk",
    ),
    Page(
        "/desk/bulk",
        400,
        {"tickets": "100001", "action": "merge", "into": "", "seen_100001": "{seen:100001}"},
        "/desk",
    ),
    Page(
        "/desk/bulk",
        409,
        {"tickets": BETA, "action": "merge", "into": "100001", f"seen_{BETA}": f"{{seen:{BETA}}}"},
        "/desk",
    ),
    Page(
        "/desk/bulk",
        409,
        {"tickets": "100001", "action": "status", "status": "open", "seen_100001": "1"},
        "/desk",
    ),
    Page(
        "/desk/bulk",
        303,
        {"tickets": "100001", "action": "assign", "agent": "{me}", "seen_100001": "{seen:100001}"},
        "/desk",
    ),
    # a ticket taken by phone, and every refusal of its form
    Page("/desk/tickets/new"),
    Page("/desk/tickets/new", 400, {**_NEW, "requester": "lumo"}, "/desk/tickets/new"),
    Page("/desk/tickets/new", 400, {**_NEW, "subject": ""}, "/desk/tickets/new"),
    Page("/desk/tickets/new", 400, {**_NEW, "phone": "12 ab"}, "/desk/tickets/new"),
    Page(
        "/desk/tickets/new", 400, {**_NEW, "requester": "ula@lyceum.example"}, "/desk/tickets/new"
    ),
    Page(
        "/desk/tickets/new",
        400,
        {**_NEW, "requester": "ula@lyceum.example", "customer": "99999", "name": "Ula Pax"},
        "/desk/tickets/new",
    ),
    Page(
        "/desk/tickets/new",
        400,
        {**_NEW, "requester": MIA, "customer": "10042", "name": "Ula Pax"},
        "/desk/tickets/new",
    ),
    Page("/desk/tickets/new", 400, {**_NEW, "customer": "20002"}, "/desk/tickets/new"),
    Page(
        "/desk/tickets/new",
        303,
        {
            **_NEW,
            "requester": "ola@lyceum.example",
            "customer": "10042",
            "name": "Ola Ivo",
            "phone": "+49 30 4711",
        },
        "/desk/tickets/new",
    ),
    # text modules
    Page("/desk/texts"),
    Page("/desk/texts", 303, _TEXT, "/desk/texts"),
    Page(
        "/desk/texts/1",
        303,
        {**_TEXT, "lang": "de", "body": "{{ requester.name }} 4711."},
        "/desk/texts",
    ),
    Page("/desk/texts/{doomed}/delete", 303, {}, "/desk/texts"),
    Page("/desk/texts", 400, {**_TEXT, "title": ""}, "/desk/texts"),
    Page("/desk/texts", 400, {**_TEXT, "lang": "xx"}, "/desk/texts"),
    Page("/desk/texts", 400, {**_TEXT, "title": "x" * 201}, "/desk/texts"),
    Page("/desk/texts", 413, {**_TEXT, "body": "x" * 20_001}, "/desk/texts"),
    Page("/desk/texts", 400, {**_TEXT, "body": "{{ lumo }}"}, "/desk/texts"),
    Page("/desk/texts/1", 400, {**_TEXT, "body": "{% if 1 %}"}, "/desk/texts"),
    Page("/desk/texts/999999", 404, _TEXT, "/desk/texts"),
    # registrations, institutions, settings
    Page("/desk/registrations"),
    Page("/desk/registrations/{reg}/approve", 303, {}, "/desk/registrations"),  # its line
    Page("/desk/customers"),
    Page("/desk/customers/10042"),
    Page("/desk/customers/10042", 303, _DAY, "/desk/customers/10042"),
    Page("/desk/customers/10042", 400, {**_DAY, "support_until": "4711x"}, "/desk/customers/10042"),
    Page(
        "/desk/customers/10042", 400, {**_DAY, "trial_until": "31.02.2027"}, "/desk/customers/10042"
    ),
    Page("/desk/customers/10042", 400, {**_DAY, "domains": "lumo"}, "/desk/customers/10042"),
    Page("/desk/customers/99999", 404),
    Page("/desk/settings"),
    Page("/desk/settings", 303, {"language": "{lang}", "notify": "1"}, "/desk/settings"),
    Page("/desk/no-such-page", 404),
]

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk


async def seeded(env_factory, sink) -> Env:  # type: ignore[no-untyped-def]
    """Everything a desk page can show: institution 10042 with Kim (a phone number) and a
    second institution, both agents, ticket 100001 with a customer's mail, an answer with a
    file, a note, status and owner history and an owner, text modules in both languages
    (and one for each agent to delete), two pending registrations."""
    env: Env = await env_factory(sink)
    await env.customer("10042", "Lyceum Alpha")
    await env.customer("20002", "Lyceum Beta")
    result = await env.cli(
        "user",
        "add",
        KIM,
        "--customer",
        "10042",
        "--name",
        "Kim Ode",
        "--lang",
        "de",
        "--phone",
        "+49 30 4711",
    )
    assert result.returncode == 0, result.stderr
    await agents(env)  # Max Berger (English) and Mia Hahn (German), with passwords
    mail = make_mail(f"Kim Ode <{KIM}>", "Lumo 4711", "Lumo 4711.\n", message_id="<l1@x>")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    await settle(env, 3)  # Kim's confirmation, both agents told
    await env.user(EDA, "20002", name="Eda Oz", lang="de")
    for n, writer in ((2, KIM), (3, KIM), (4, EDA)):  # to merge, and one of another institution
        mail = make_mail(writer, f"Lumo {n}", "Lumo.\n", message_id=f"<l{n}@x>")
        assert await env.send(mail) == (250, f"2.0.0 Ok: ticket 10000{n}")
    await settle(env, 12)
    mia = Client(env)
    assert (await mia.login(MIA)).status_code == 303
    for path, form in (
        (f"{TICKET}/reply", {"body": "Lumo 1.", "status": "answered"}),
        (f"{TICKET}/note", {"body": "Lumo 2."}),
        (f"{TICKET}/status", {"status": "open"}),
        (f"{TICKET}/assign", {"agent": MAX}),
    ):
        assert (await mia.post(path, form, form_page=TICKET)).status_code == 303, path
    kim = await logged_in(env, KIM)  # a status change in the portal: a note "(by ...)"
    for action in ("close", "reopen"):
        done = await kim.post(f"/tickets/100001/{action}", {}, form_page="/tickets/100001")
        assert done.status_code == 303, action
    for title, lang in (("Lumo", "de"), ("Lumo", "en"), ("Lumo 3", "de"), ("Lumo 4", "en")):
        added = await mia.post(
            "/desk/texts",
            {"title": title, "lang": lang, "body": "{{ requester.name }} 4711."},
            form_page="/desk/texts",
        )
        assert added.status_code == 303
    max_c = Client(env)  # Max has the ticket open, his answer form holding text (presence)
    assert (await max_c.login(MAX)).status_code == 303
    await max_c.get(TICKET)
    beat = await max_c.post(f"{TICKET}/presence", {"typing": "1"})
    assert beat.status_code == 200
    for ivo in ("ivo@mail.example", "ida@mail.example"):  # two pending: one for each walker
        visitor = Client(env)
        await visitor.post(
            "/register",
            {
                "email": ivo,
                "name": "Ivo Lumo",
                "customer_number": "10042",
                "password": PASSWORD,
                "language": "de",
            },
            form_page="/register",
        )
        confirm = link_in(await next_mail_to(sink, ivo, after=0))
        await visitor.post(confirm, {"password": PASSWORD}, form_page=confirm)
    assert "registration-" in (await mia.get("/desk/registrations")).text
    return env


def _filled(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\{(me|lang|doomed|source|reg|seen:\d+)\}", lambda m: values[m.group(1)], text)


_SEEN = re.compile(r'name="seen_(\d+)" value="(\d+)"')


async def walk(env: Env, email: str, lang: str, doomed: int, source: str) -> list[str]:
    """Every page of PAGES as the agent `email` (desk in `lang`) sees it: the leaks found,
    one line each."""
    client = Client(env, lang="de" if lang == "en" else "en")  # the agent's setting wins
    assert (await client.login(email)).status_code == 303
    # Each walker approves a registration of its own: Mia the first, Max the second.
    values = {"me": email, "lang": lang, "doomed": str(doomed), "source": source,
              "reg": "1" if email == MIA else "2"}  # fmt: skip
    leaks: list[str] = []
    for step in PAGES:
        path = _filled(step.path, values)
        if step.form is None:
            response = await client.get(path)
        else:
            origin = await client.get(_filled(step.origin, values))
            # The queue's version of each ticket, as its bulk form carries them.
            values.update((f"seen:{n}", v) for n, v in _SEEN.findall(origin.text))
            form = {k: _filled(v, values) for k, v in step.form.items()}
            response = await client.post(path, form, files=step.files or None)
        assert response.status_code == step.status, (path, step.form, response.text[:2000])
        if response.status_code == 303:
            path = response.headers["location"]
            response = await client.get(path)
            assert response.status_code == 200, path
        shown, found = page_leaks(response.text, lang)
        assert shown == lang, (path, shown)
        if found:
            form = {k: v[:20] for k, v in (step.form or {}).items()}
            leaks.append(f"{lang} {step.status} {path} {form}: {sorted(set(found))}")
    return leaks


async def test_the_desk_shows_no_word_of_the_other_language(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Every desk page, action and error line, read by an agent with German and one with
    English settings, has no word of the other language; the owner filter takes the words
    its hint names."""
    env = await seeded(env_factory, sink)
    leaks = await walk(env, MIA, "de", doomed=3, source="100002")
    leaks += await walk(env, MAX, "en", doomed=4, source="100003")
    assert not leaks, "\n".join(leaks)
    # The owner filter takes the words its hint names, in either language.
    max_c = Client(env)
    assert (await max_c.login(MAX)).status_code == 303
    for word, same in (("ich", "me"), ("niemand", "none"), ("nobody", "none")):
        asked = queued_numbers(await max_c.get(f"/desk?assignee={word}"))
        assert asked == queued_numbers(await max_c.get(f"/desk?assignee={same}")) != [], word


def test_the_agent_mails_have_no_word_of_the_other_language() -> None:
    """Every agent mail, in German and in English, with each status its reader can see (the
    customer's answer never says waiting: it is open to them), has no word of the other
    language."""
    templates = Templates(Path(__file__).resolve().parent.parent / "templates")
    leaks = []
    for lang in ("de", "en"):
        for name in (*AGENT_TEMPLATE_NAMES, "agent_reply"):
            for status in CUSTOMER_STATUSES if name == "agent_reply" else SETTABLE_STATUSES:
                context = sample_context(
                    subject="Lumo 4711",
                    name="Kim Ode",
                    customer="Lyceum Alpha",
                    team="Lumo",
                    text="Lumo 4711.",
                    agent_name="Ola Ivo",
                    status=status,
                    old_status="new",
                    note="Lumo 42.",
                    attachments=["lumo.png"],
                )
                subject, body = templates.render(name, lang=lang, context=context)
                found = foreign_words(f"{subject}\n{body}", lang)
                if found:
                    leaks.append(f"{lang} {name} {status}: {sorted(set(found))}")
    assert not leaks, "\n".join(leaks)


# The language choice names each language in itself (as the settings page marks with `lang`).
ENDONYMS = frozenset({"lang.de", "lang.en", "error.language"})


def test_no_catalogue_text_has_a_word_of_the_other_language() -> None:
    """Every text of the web's catalogue, also those hard to bring onto a page (a search cut
    short, too many files, an expired form), has no word of the other language."""
    leaks = [
        f"{lang} {key}: {found}"
        for lang in LANGUAGES
        for key, text in CATALOGUES[lang].items()
        if key not in ENDONYMS and (found := foreign_words(re.sub(r"\{\w+\}", " ", text), lang))
    ]
    assert not leaks, "\n".join(leaks)


def test_the_word_lists_find_what_they_are_for() -> None:
    """The reader finds a leak in text, attributes and buttons, and leaves out addresses,
    placeholders, code and what is marked as another language."""
    page = (
        '<html lang="de"><title>Speichern</title><p>Ticket {{ ticket.number }} '
        'max@stueber.example</p><code>requester</code><option lang="en">English</option>'
        '<input placeholder="Search"><button value="x">Notiz</button><p>open</p></html>'
    )
    assert page_leaks(page, "de") == ("de", ["Search", "open"])
    assert foreign_words("Größe and Antwort", "en") == ["Größe", "Antwort"]
