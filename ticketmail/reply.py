"""What the writer added: a body without quoted history and signature (German and English)."""

from __future__ import annotations

import re

__all__ = ["extract_reply"]

_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"On\b.{0,400}\bwrote\s*:"  # On Mon, 1 Jan 2026, Anna <a@b> wrote:
    r"|Am\b.{0,400}\bschrieb\b.{0,200}:"  # Am 01.01.2026 um 10:00 schrieb Anna:
    r"|Le\b.{0,400}\ba écrit\s*:"
    r"|.{0,200}<[^>@\s]+@[^>\s]+>\s*(?:wrote|schrieb)\s*:"
    r")\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:Original Message|Original-Nachricht|Ursprüngliche Nachricht|"
    r"Originalnachricht|Forwarded message|Weitergeleitete Nachricht|Reply above this line|"
    r"Antwort über dieser Zeile)\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{8,}\s*$")
_FROM_LINE = re.compile(r"^\s*\*?(?:From|Von|De|Sender|Absender)\s*:\*?\s", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*\*?(?:Sent|Gesendet|Date|Datum|To|An|Subject|Betreff|Cc)\s*:\*?", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE_SIG = re.compile(
    r"^\s*(?:Sent from my \w+|Von meinem \w+ gesendet|Gesendet von meinem \w+)", re.IGNORECASE
)


def _cut_index(lines: list[str]) -> int:
    """Index of the first line that belongs to quoted history or the signature."""
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) or _SEPARATOR.match(line):
            return i
        if _ATTRIBUTION.match(line):
            return i
        # Attribution lines wrapped over two lines by the mail client.
        wrapped = i + 1 < len(lines) and _ATTRIBUTION.match(line + " " + lines[i + 1].strip())
        if wrapped and re.match(r"^\s*(?:On|Am)\b", line, re.IGNORECASE):
            return i
        if _FROM_LINE.match(line):
            following = lines[i + 1 : i + 6]
            if sum(1 for f in following if _HEADER_LINE.match(f)) >= 2:
                start = i
                if i > 0 and _RULE.match(lines[i - 1]):
                    start = i - 1
                return start
        if _MOBILE_SIG.match(line):
            return i
    return len(lines)


def extract_reply(body: str) -> str:
    """The text the writer added, without quoted history, quote lines and signature."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = lines[: _cut_index(lines)]
    kept = [line for line in lines if not line.lstrip().startswith(">")]
    text = "\n".join(line.rstrip() for line in kept).strip("\n")
    return text.strip() + "\n" if text.strip() else ""
