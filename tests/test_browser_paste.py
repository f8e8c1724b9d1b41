"""Screenshots pasted and files dropped into the portal's and the desk's forms, and images shown
in the desk (issue 24, behaviours 3 and 4), in Debian's Chromium driven by Playwright against
the real daemon. Pastes and drops are real `paste` and `drop` events carrying a DataTransfer,
as the browser fires them; what was attached is read back through `ticket show --json`. A
JavaScript error in the console (a refused script or image, CSP) fails the test."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage

import pytest
from conftest import REPO, Env, make_mail
from playwright.async_api import Browser, Page, expect
from test_browser_desk import agent_login, log_in
from test_browser_portal import SCREENSHOTS, Watched, new_page
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, agents
from web_support import ANNA, give_password, png

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

BEN = "ben@schule.example"
WAIT = 10_000  # ms: the bound of every expect()

# Dispatch a `paste` (ClipboardEvent) or `drop` (DragEvent) on `target`, carrying the files
# [name, type, base64] in a DataTransfer; answers whether the page let the default happen.
DISPATCH = """([kind, target, files]) => {
  const data = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    data.items.add(new File([bytes], name, { type }));
  }
  const init = { bubbles: true, cancelable: true };
  const event = kind === "paste"
    ? new ClipboardEvent("paste", { ...init, clipboardData: data })
    : new DragEvent("drop", { ...init, dataTransfer: data });
  return document.querySelector(target).dispatchEvent(event);
}"""


def _file(name: str, kind: str, data: bytes) -> list[str]:
    return [name, kind, base64.b64encode(data).decode("ascii")]


async def dispatch(page: Page, kind: str, target: str, *files: list[str]) -> bool:
    return bool(await page.evaluate(DISPATCH, [kind, target, list(files)]))


async def customer_login(
    browser: Browser, env: Env, email: str, lang: str, *, javascript: bool = True
) -> Watched:
    await give_password(env, email)
    if javascript:
        watched = await new_page(browser, env, lang=lang, width=900)
    else:
        context = await browser.new_context(
            base_url=f"http://127.0.0.1:{env.daemon.web_port}", java_script_enabled=False,
            extra_http_headers={"Accept-Language": lang},
        )  # fmt: skip
        watched = Watched(await context.new_page())
    await log_in(watched.page, email, lands="**/tickets")
    return watched


async def files_of(env: Env, number: int, article: int = -1) -> list[tuple[str, str, int]]:
    shown = await env.cli_json("ticket", "show", str(number))
    return [(f["filename"], f["content_type"], f["size"])
            for f in shown["articles"][article]["attachments"]]  # fmt: skip


@pytest.mark.parametrize(
    ("email", "lang", "name"),
    [(ANNA, "de", "Bildschirmfoto-1.png"), (BEN, "en", "screenshot-1.png")],
)
async def test_pasted_screenshot_becomes_attachment_of_new_ticket(
    env: Env, browser: Browser, email: str, lang: str, name: str
) -> None:
    """A PNG pasted into the new-ticket text shows as a thumbnail, gets a name in the user's
    language and is attached to the new ticket; a text paste is left to the browser."""
    watched = await customer_login(browser, env, email, lang)
    page = watched.page
    await page.goto("/tickets/new")
    subject, text = {
        "de": ("Drucker im Lehrerzimmer", "Er druckt nur leere Seiten, siehe Bild."),
        "en": ("Printer in the staff room", "It prints only blank pages, see the picture."),
    }[lang]
    await page.locator("#subject").fill(subject)
    await page.locator("#body").fill(text)
    shot = png(width=64, height=48, seed=3)
    assert not await dispatch(page, "paste", "#body", _file("image.png", "image/png", shot))
    thumb = page.locator(f"ul.thumbs li img[alt='{name}']")
    await expect(thumb).to_be_visible(timeout=WAIT)
    await expect(page.locator(f"ul.thumbs img[alt='{name}']")).to_have_js_property(
        "naturalWidth", 64, timeout=WAIT
    )  # the thumbnail loads (a data: URL, which the CSP allows)
    assert await page.evaluate("document.getElementById('attachments').files.length") == 1
    # A paste of text (no image) is not taken: the browser's default runs.
    assert await page.evaluate("""() => {
      const data = new DataTransfer();
      data.setData("text/plain", "Raum 12");
      return document.getElementById("body").dispatchEvent(new ClipboardEvent("paste",
        { bubbles: true, cancelable: true, clipboardData: data }));
    }""")
    target = REPO / "docs" if SCREENSHOTS else env.data_dir / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    await page.locator("main").screenshot(path=str(target / f"portal-paste-{lang}.png"))
    assert (target / f"portal-paste-{lang}.png").stat().st_size > 1000
    await page.locator("form[action='/tickets/new'] button[type=submit]").click()
    await page.wait_for_url(re.compile(r".*/tickets/\d+$"))
    number = int(page.url.rsplit("/", 1)[1])
    assert await files_of(env, number, 0) == [(name, "image/png", len(shot))]
    watched.check()


async def test_two_files_dropped_on_the_reply_form_are_both_attached(
    env: Env, browser: Browser
) -> None:
    """Two files dropped on the portal's reply form are both attached to the reply."""
    assert (await env.send(make_mail(ANNA, "Beamer flackert", "Seit Montag.\n")))[0] == 250
    watched = await customer_login(browser, env, ANNA, "de")
    page = watched.page
    await page.goto("/tickets/100001")
    shot, log = png(width=20, height=10, seed=5), b"Fehler 42 um 10:03\n"
    assert not await dispatch(page, "drop", "form[action$='/reply'] textarea",
                              _file("beamer.png", "image/png", shot),
                              _file("protokoll.txt", "text/plain", log))  # fmt: skip
    await expect(page.locator("ul.thumbs li")).to_have_count(2, timeout=WAIT)
    await expect(page.locator("ul.thumbs li", has_text="protokoll.txt")).to_be_visible()
    await page.locator("#body").fill("Hier Bild und Protokoll.")
    async with page.expect_navigation():
        await page.locator("form[action$='/reply'] button[type=submit]").click()
    assert sorted(await files_of(env, 100001)) == [
        ("beamer.png", "image/png", len(shot)),
        ("protokoll.txt", "text/plain", len(log)),
    ]
    watched.check()


async def test_file_whose_thumbnail_was_removed_is_not_attached(env: Env, browser: Browser) -> None:
    """In the desk's answer form, a file whose thumbnail is removed before sending is not
    attached; the other ones (a pasted screenshot, a dropped file) are."""
    await agents(env)
    assert (await env.send(make_mail(ANNA, "WLAN im Neubau", "Kein Empfang.\n")))[0] == 250
    watched = await agent_login(browser, env, MAX, "en")
    page = watched.page
    await page.goto("/desk/tickets/100001")
    shot = png(width=30, height=20, seed=7)
    assert not await dispatch(page, "paste", "#reply-body", _file("image.png", "image/png", shot))
    assert not await dispatch(page, "drop", "#reply-body",
                              _file("geheim.txt", "text/plain", b"nicht senden\n"),
                              _file("plan.txt", "text/plain", b"Plan\n"))  # fmt: skip
    await expect(page.locator("ul.thumbs li")).to_have_count(3, timeout=WAIT)
    await page.get_by_role("button", name="Remove: geheim.txt").click()
    await expect(page.locator("ul.thumbs li")).to_have_count(2, timeout=WAIT)
    assert await page.evaluate(
        "Array.from(document.getElementById('reply-files').files, (f) => f.name)"
    ) == ["screenshot-1.png", "plan.txt"]
    await page.locator("#reply-body").fill("Please see the plan.")
    async with page.expect_navigation():
        await page.locator("form[action$='/reply'] button[type=submit]").click()
    assert sorted(await files_of(env, 100001)) == [
        ("plan.txt", "text/plain", 5),
        ("screenshot-1.png", "image/png", len(shot)),
    ]
    watched.check()


async def test_screenshot_pasted_into_the_desks_new_ticket_form_is_attached(
    env: Env, browser: Browser
) -> None:
    """A screenshot pasted into the desk's new-ticket form (a call taken) is attached."""
    await agents(env)
    watched = await agent_login(browser, env, MAX, "en")
    page = watched.page
    await page.goto("/desk/tickets/new")
    await page.locator("#requester").fill(ANNA)
    await page.locator("#subject").fill("Beamer in Raum 12")
    await page.locator("#body").fill("Mrs Müller calls: no picture, screenshot by chat.")
    shot = png(width=12, height=9, seed=4)
    assert not await dispatch(page, "paste", "#body", _file("image.png", "image/png", shot))
    await expect(page.locator("ul.thumbs li")).to_have_count(1, timeout=WAIT)
    async with page.expect_navigation():
        await page.locator("form[action='/desk/tickets/new'] button[type=submit]").click()
    assert page.url.endswith("/desk/tickets/100001")
    assert await files_of(env, 100001, 0) == [("screenshot-1.png", "image/png", len(shot))]
    watched.check()


async def test_paste_and_drop_keep_to_the_limits(env: Env, browser: Browser) -> None:
    """Pasting and dropping keep to the forms' limits: at most 20 files, the total size
    within smtp.max_message_bytes; what goes beyond is not added, and a line says so."""
    watched = await customer_login(browser, env, BEN, "en")
    page = watched.page
    await page.goto("/tickets/new")
    many = [_file(f"note-{i}.txt", "text/plain", b"x") for i in range(21)]
    await dispatch(page, "drop", "#body", *many)
    await expect(page.locator("ul.thumbs li")).to_have_count(20, timeout=WAIT)
    await expect(page.locator(".attach-refused")).to_have_text(
        "At most 20 files; no more were added.", timeout=WAIT
    )
    await page.get_by_role("button", name="Remove: note-0.txt").click()
    await expect(page.locator("ul.thumbs li")).to_have_count(19, timeout=WAIT)
    limit = env.config.smtp.max_message_bytes
    refused = await page.evaluate("""(size) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(size)], "gross.bin"));
      document.getElementById("body").dispatchEvent(new DragEvent("drop",
        { bubbles: true, cancelable: true, dataTransfer: data }));
      return document.getElementById("attachments").files.length;
    }""", limit)  # fmt: skip
    assert refused == 19
    await expect(page.locator(".attach-refused")).to_contain_text("in all; what went beyond")
    watched.check()


async def test_without_javascript_the_file_picker_still_attaches(
    env: Env, browser: Browser
) -> None:
    """Without JavaScript the new-ticket form's file picker attaches a file as before."""
    watched = await customer_login(browser, env, ANNA, "de", javascript=False)
    page = watched.page
    await page.goto("/tickets/new")
    assert await page.locator("ul.thumbs").count() == 0  # no script ran
    await page.locator("#subject").fill("Zeugnisdruck")
    await page.locator("#body").fill("Siehe Anhang.")
    shot = png(width=8, height=8, seed=1)
    await page.locator("#attachments").set_input_files(
        {"name": "zeugnis.png", "mimeType": "image/png", "buffer": shot}
    )
    async with page.expect_navigation():
        await page.locator("form[action='/tickets/new'] button[type=submit]").click()
    number = int(page.url.rsplit("/", 1)[1])
    assert await files_of(env, number, 0) == [("zeugnis.png", "image/png", len(shot))]
    watched.check()


def _mail_with_files() -> EmailMessage:
    mail = make_mail(ANNA, "Fehlermeldung beim Login", "Bild und Plan anbei.\n")
    mail.add_attachment(png(width=40, height=30, seed=2), maintype="image", subtype="png",
                        filename="fehler.png")  # fmt: skip
    mail.add_attachment(b"%PDF-1.4\n%%EOF\n", maintype="application", subtype="pdf",
                        filename="plan.pdf")  # fmt: skip
    return mail


async def test_desk_shows_attached_png_inline_linking_to_full_size(
    env: Env, browser: Browser
) -> None:
    """The desk's ticket page shows an attached PNG as an image that loads and links to the
    file (served as the portal serves it: its type, attachment, nosniff); a PDF stays a link."""
    await agents(env)
    assert (await env.send(_mail_with_files()))[0] == 250
    watched = await agent_login(browser, env, MAX, "en")
    page = watched.page
    await page.goto("/desk/tickets/100001")
    links = page.locator("article ul.files a[href^='/desk/tickets/100001/files/']")
    names = {await a.inner_text(): await a.get_attribute("href") for a in await links.all()}
    names.pop("", None)  # the image's own link, checked below
    assert set(names) == {"fehler.png", "plan.pdf"}, names  # each file's own link by name
    url = names["fehler.png"]
    image = page.locator("article img[alt='fehler.png']")
    await expect(image).to_have_count(1, timeout=WAIT)
    await image.scroll_into_view_if_needed()
    await expect(page.locator("article img[alt='fehler.png']")).to_have_js_property(
        "naturalWidth", 40, timeout=WAIT
    )
    assert await image.get_attribute("src") == url
    assert await page.locator(f"article a[href='{url}'] > img").count() == 1  # full size
    answer = await page.request.get(url)
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["content-disposition"].startswith("inline;")  # opens at full size
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert await page.locator("article img[alt='plan.pdf']").count() == 0
    assert await page.locator(f"article a[href='{names['plan.pdf']}'] img").count() == 0
    watched.check()
