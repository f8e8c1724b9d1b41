"""HTML mail bodies to readable plain text: blocks and line breaks kept, scripts dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

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
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})
_MAX_TEXT = 5_000_000


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.href_stack: list[str | None] = []
        self.size = 0

    def _emit(self, text: str) -> None:
        if self.size < _MAX_TEXT:
            self.parts.append(text)
            self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if tag == "br":
            self._emit("\n")
        elif tag in _BLOCK:
            self._emit("\n\n" if tag in {"p", "h1", "h2", "h3", "table", "blockquote"} else "\n")
            if tag == "li":
                self._emit("- ")
            if tag == "pre":
                self.pre_depth += 1
        elif tag in {"td", "th"}:
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
        if tag == "a" and self.href_stack:
            href = self.href_stack.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                target = href.removeprefix("mailto:")
                last = self.parts[-1] if self.parts else ""
                if target not in last:
                    self._emit(f" <{target}>")
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
            self._emit("\n\n" if tag in {"p", "h1", "h2", "h3", "table", "blockquote"} else "\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self._emit(data)
        else:
            self._emit(re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(html: str) -> str:
    """Readable text of an HTML body; never raises on broken markup."""
    converter = _Converter()
    try:
        converter.feed(html)
        converter.close()
    except (AssertionError, ValueError):  # pragma: no cover - HTMLParser on pathological input
        pass
    text = "".join(converter.parts).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    cleaned = "\n".join(line.lstrip(" ") if not line.startswith(" \t") else line for line in lines)
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned)
    return cleaned.strip() + "\n" if cleaned.strip() else ""
