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
_HEADER_RULE = re.compile(r"^\s*(?:_{8,}|-{8,})\s*$")  # Outlook's line above a header block
_FROM_LINE = re.compile(r"^\s*\*?(?:From|Von|De|Sender|Absender)\s*:\*?\s", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*\*?(?:Sent|Gesendet|Date|Datum|To|An|Subject|Betreff|Cc)\s*:\*?", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE_SIG = re.compile(
    r"^\s*(?:Sent from my \w+|Von meinem \w+ gesendet|Gesendet von meinem \w+)", re.IGNORECASE
)


def _attribution_lines(lines: list[str], i: int) -> int:
    """How many lines (0, 1 or 2) from `i` on form an `On ... wrote:` attribution."""
    if _ATTRIBUTION.match(lines[i]):
        return 1
    # Attribution lines wrapped over two lines by the mail client.
    wrapped = i + 1 < len(lines) and _ATTRIBUTION.match(lines[i] + " " + lines[i + 1].strip())
    if wrapped and re.match(r"^\s*(?:On|Am)\b", lines[i], re.IGNORECASE):
        return 2
    return 0


def _quote_follows(lines: list[str], start: int) -> bool:
    """The next non-blank line from `start` on is a `>` quote."""
    for j in range(start, len(lines)):
        if lines[j].strip():
            return lines[j].lstrip().startswith(">")
    return False


def _rule_above(lines: list[str], i: int) -> int:
    """Index of the rule line above a header block (blank lines between), else `i`."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j if j >= 0 and _HEADER_RULE.match(lines[j]) else i


def _scan(lines: list[str]) -> tuple[int, set[int]]:
    """Where quoted history or the signature starts, and attribution lines to drop before it.

    An attribution followed by `>` quotes introduces a quote, not the end of the new text:
    a writer may answer below it (bottom-posting) or between the quotes. A rule of
    underscores after a quote starts a mailing list footer.
    """
    dropped: set[int] = set()
    quoted = False
    for i, line in enumerate(lines):
        if i in dropped:
            continue
        quoted = quoted or line.lstrip().startswith(">")
        if _SIGNATURE.match(line) or _SEPARATOR.match(line) or _MOBILE_SIG.match(line):
            return i, dropped
        if quoted and _RULE.match(line):
            return i, dropped
        span = _attribution_lines(lines, i)
        if span:
            if not _quote_follows(lines, i + span):
                return i, dropped
            dropped.update(range(i, i + span))
            continue
        if _FROM_LINE.match(line):
            following = lines[i + 1 : i + 6]
            if sum(1 for f in following if _HEADER_LINE.match(f)) >= 2:
                return _rule_above(lines, i), dropped
    return len(lines), dropped


def extract_reply(body: str) -> str:
    """The text the writer added, without quoted history, quote lines and signature."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut, dropped = _scan(lines)
    # A quote between two answers leaves an empty line, so the answers stay apart.
    kept = [
        "" if line.lstrip().startswith(">") else line.rstrip()
        for i, line in enumerate(lines[:cut])
        if i not in dropped
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept))
    return text.strip() + "\n" if text.strip() else ""
