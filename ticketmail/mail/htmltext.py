"""HTML mail bodies to readable plain text: blocks and line breaks kept, scripts dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["MAX_HTML_CHARS", "html_to_text", "trim_html"]

_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
        "center",
    }
)
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "table", "blockquote"})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})
_MAX_TEXT = 5_000_000
# Python's HTMLParser reads between 1 and 2 MB of markup per second: more would break the
# time bound of a mail. Inline images (data: URIs) are dropped first, they carry no text.
MAX_HTML_CHARS = 500_000
_DATA_URI = re.compile(r"""data:[^"')\s]{64,}""")  # a literal start: found by fast search
_SPACE = re.compile(r"[ \t\r\n\f]+")  # collapsible outside <pre>; no-break spaces stay


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.href_stack: list[str | None] = []
        self.size = 0
        self.line_start = True
        self.newlines = 0  # how many line breaks the text ends with

    def _emit(self, text: str) -> None:
        if self.size < _MAX_TEXT and text:
            self.parts.append(text)
            self.size += len(text)
            self.line_start = text.endswith(("\n", "\t"))
            stripped = text.rstrip("\n")
            self.newlines = len(text) - len(stripped) + (self.newlines if not stripped else 0)

    def _block(self, tag: str) -> None:
        """Start or end a block: a line break, or an empty line around paragraphs."""
        wanted = 2 if tag in _PARAGRAPH else 1
        if self.parts and self.newlines < wanted:
            self._emit("\n" * (wanted - self.newlines))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.skip_depth = 0  # the body ends a <head> or <title> left open
            return
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self._emit("\n")
        elif tag in _BLOCK:
            self._block(tag)
            if tag == "li":
                self._emit("- ")
            if tag == "pre":
                self.pre_depth += 1
        elif tag in {"td", "th"} and not self.line_start:
            self._emit("\t")
        elif tag == "a":
            self.href_stack.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._emit(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "a" and self.href_stack:
            href = self.href_stack.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                target = href.removeprefix("mailto:")
                last = self.parts[-1] if self.parts else ""
                if target not in last:
                    self._emit(f"<{target}>" if self.line_start else f" <{target}>")
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
            self._block(tag)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self._emit(data)
            return
        text = _SPACE.sub(" ", data)
        self._emit(text.lstrip(" \xa0") if self.line_start else text)


def trim_html(html: str) -> tuple[str, bool]:
    """Markup the converter can read in time: no inline data, at most MAX_HTML_CHARS.

    The flag says whether markup (and so possibly text) was cut off.
    """
    if len(html) > 4096 and "data:" in html:
        html = _DATA_URI.sub("data:", html)
    if len(html) <= MAX_HTML_CHARS:
        return html, False
    return html[:MAX_HTML_CHARS], True


def html_to_text(html: str) -> str:
    """Readable text of an HTML body; never raises on broken markup; bounded in time."""
    html, _ = trim_html(html)
    converter = _Converter()
    try:
        converter.feed(html)
        converter.close()
    except (AssertionError, ValueError):  # pragma: no cover - HTMLParser on pathological input
        pass
    text = "".join(converter.parts).replace("\xa0", " ")
    cleaned = "\n".join(line.rstrip() for line in text.split("\n"))
    if "\n\n\n" in cleaned:
        cleaned = re.sub(r"\n{3,}", "\n\n", cleaned)
    cleaned = cleaned.strip("\n")
    return cleaned + "\n" if cleaned.strip() else ""
