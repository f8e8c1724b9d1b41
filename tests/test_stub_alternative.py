"""A plain-text alternative that is only a stub gives way to the HTML part's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketmail.mail.parse import STUB_GAP, STUB_WORDS, parse_mail

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
NEWSLETTER_HTML = (
    "<html><body><h1>Neuigkeiten im März</h1>"
    "<p>Liebe Kundinnen und Kunden, in diesem Monat haben wir die Suche beschleunigt, den "
    "Export nach Excel überarbeitet und zwei Fehler beim Druck von Rechnungen behoben. "
    "Außerdem gibt es ab sofort eine Schulung für neue Mitarbeitende, jeden ersten Montag "
    "im Monat, kostenlos und online.</p><p>Ihr Team</p></body></html>"
)


def alternative(plain: str, html: str, *, related: bool = False) -> bytes:
    """A multipart/alternative mail of a plain and an HTML rendering (the HTML inside a
    multipart/related with an image when related is set)."""
    html_part = f"Content-Type: text/html; charset=utf-8\n\n{html}\n"
    if related:
        html_part = (
            'Content-Type: multipart/related; boundary="r"\n\n--r\n' + html_part
            + "--r\nContent-Type: image/png\nContent-ID: <logo>\n\nPNG\n--r--\n"
        )  # fmt: skip
    return (
        "From: news@example.org\nSubject: März\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="a"\n\n'
        f"--a\nContent-Type: text/plain; charset=utf-8\n\n{plain}\n"
        f"--a\n{html_part}--a--\n"
    ).encode()


@pytest.mark.parametrize(
    "stub",
    [
        "View this email in your browser: https://news.example.org/m/123",
        "********************************\n* NEWSLETTER MÄRZ *\n********************************",
        "https://news.example.org/m/123",
        "This is an HTML message. Please use an HTML capable mail program to read this message.",
    ],
)
@pytest.mark.parametrize("related", [False, True])
def test_stub_text_part_gives_way_to_html(stub: str, related: bool) -> None:
    """A plain part of a few words beside an HTML part that says much more: the HTML's text."""
    mail = parse_mail(alternative(stub, NEWSLETTER_HTML, related=related))
    assert "Schulung für neue Mitarbeitende" in mail.body_text
    assert "View this email" not in mail.body_text
    assert "*****" not in mail.body_text


def test_short_real_answer_stays_plain() -> None:
    """A short real answer whose HTML says the same (plus a signature) keeps its plain text."""
    plain = "Danke, es geht jetzt.\n\nGruß\nAnna"
    html = "<p>Danke, es geht <b>jetzt</b>.</p><p>Gruß<br>Anna<br>Musterfirma GmbH</p>"
    mail = parse_mail(alternative(plain, html))
    assert mail.body_text == plain + "\n"


def test_short_answer_above_long_html_quote_stays_plain() -> None:
    """Quoted history in the HTML part does not count: a short plain answer stays."""
    plain = "Ja, passt.\n\nAnna"
    quote = " ".join(["Zitierter Text der vorigen Nachricht."] * 30)
    html = f"<p>Ja, passt.</p><p>Anna</p><blockquote>{quote}</blockquote>"
    html = html.replace("<blockquote>", "<p>Am 1. März schrieb Bob:</p><blockquote>")
    mail = parse_mail(alternative(plain, html))
    assert mail.body_text == plain + "\n"


def test_full_plain_text_stays_even_if_html_is_longer() -> None:
    """A plain part of STUB_WORDS words or more is a real rendering and stays."""
    plain = " ".join(["Wort"] * STUB_WORDS)
    html = "<p>" + " ".join(["Wort"] * (4 * STUB_WORDS + STUB_GAP)) + "</p>"
    mail = parse_mail(alternative(plain, html))
    assert mail.body_text == plain + "\n"


def test_plain_just_under_the_gap_stays() -> None:
    """HTML with fewer than STUB_GAP more words than a short plain part does not replace it."""
    plain = "Hallo zusammen"
    html = "<p>" + " ".join(["Hallo", "zusammen", *(["mehr"] * (STUB_GAP - 1))]) + "</p>"
    assert parse_mail(alternative(plain, html)).body_text == plain + "\n"


@pytest.mark.parametrize(
    "name",
    ["php-mime-mail-parser/tests/mails/issue115", "php-mime-mail-parser/tests/mails/m0008"],
)
def test_corpus_html_only_notice_gives_way(name: str) -> None:
    """Real mails whose plain part says "This is an HTML message" get the HTML's text."""
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {name} not found under {CORPUS}")
    mail = parse_mail(path.read_bytes())
    assert "Please use an HTML capable mail program" not in mail.body_text
    assert mail.body_text.strip()


def test_corpus_talon_short_replies_stay_plain() -> None:
    """Talon's short plain replies ("Hello" above a quote) keep their plain text."""
    path = CORPUS / "talon/tests/fixtures/standard_replies/android.eml"
    if not path.is_file():
        pytest.skip(f"corpus file not found under {CORPUS}")
    mail = parse_mail(path.read_bytes())
    assert mail.body_text.startswith("Hello\n")
