"""What the writer added: a body without quoted history and signature (German and English)."""

from __future__ import annotations

import re

__all__ = ["extract_reply"]

# A reply a person typed fits in far fewer lines. The scan costs a few microseconds per
# line, more for lines that end with a colon; beyond this many lines nothing is cut.
MAX_SCAN_LINES = 20_000
_MAX_ATTRIBUTION = 500  # characters; longer lines are text
_WRAPPED = 3  # clients wrap a long attribution over up to this many lines

# Known phrasings, anchored at the start of the (joined) line.
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:"
    r"On\b.{0,400}\bwrote"  # On Mon, 1 Jan 2026, Anna <a@b> wrote:
    r"|Am\b.{0,400}\bschrieb\b.{0,200}"  # Am 01.01.2026 um 10:00 schrieb Anna:
    r"|Le\b.{0,400}\ba écrit"
    r"|(?:Quoting|Zitat von)\b.{0,300}"  # Horde: Zitat von Anna <a@b>:
    r")\s*:\s*$",
    re.IGNORECASE,
)
_KEYWORDS = ("wrote", "schrieb", "écrit", "quoting", "zitat", "geschrieben")
# Attributions in any language, recognised by their shape: a date, an address or a time,
# and a colon at the end, right before a `>` quote (Android: `02.04.2012 14:20 ... написал:`).
_DATE = re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{2,4}\b|\b(?:19|20)\d\d\b")
_ADDRESS_OR_TIME = re.compile(r"@[\w-]+\.|\b\d{1,2}:\d\d\b")
_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:Original Message|Original-Nachricht|Ursprüngliche Nachricht|"
    r"Originalnachricht|Forwarded message|Weitergeleitete Nachricht|Reply above this line|"
    r"Antwort über dieser Zeile)\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{8,}\s*$")
_HEADER_RULE = re.compile(r"^\s*(?:_{8,}|-{8,})\s*$")  # Outlook's line above a header block
_LIST_FOOTER = re.compile(r"mailing ?list|mailingliste|listinfo", re.IGNORECASE)
_FROM_LINE = re.compile(r"^\s*\*?(?:From|Von|De|Sender|Absender)\s*:\*?\s", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*\*?(?:Sent|Gesendet|Date|Datum|To|An|Subject|Betreff|Cc)\s*:\*?", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^-- ?$")
# A line that `str.lstrip()` leaves starting with `>`, anywhere in a body (one C-speed search
# tells a body without quotes, most first mails, from one that needs the line-by-line look).
_ANY_QUOTE = re.compile(r"^\s*>", re.MULTILINE)
# What every line the patterns above and below can match starts with: one cheap test per
# line, so that most lines of a long body skip them all.
_MAYBE_MARK = re.compile(r"\s*(?:[-_=*]|sent|get|von|gesendet|from|de|sender|absender)", re.I)
# Signature lines of mobile and webmail clients: the whole line, not a sentence that starts
# the same way ("Sent from my desk, is much easier ..." is text).
_MOBILE_SIG = re.compile(
    r"^\s*(?:"
    r"Sent from my(?: [\w-]+){1,4}"
    r"|Sent (?:from|with) (?:Outlook|Mail|Yahoo Mail|AOL Mobile Mail|Sparrow)\b.{0,60}"
    r"|Get Outlook for (?:iOS|Android)\b.{0,60}"
    r"|Von meinem(?: [\w-]+){1,4} gesendet"
    r"|Gesendet von meinem(?: [\w-]+){1,4}"
    r"|Gesendet (?:von|mit) (?:Outlook|Mail|GMX|WEB\.DE|der GMX|der WEB\.DE)\b.{0,60}"
    r")\s*\.?\s*$",
    re.IGNORECASE,
)


class _Body:
    """The lines of a body, and for each line whether the next non-blank one is a quote."""

    def __init__(self, lines: list[str], *, quotes: bool = True) -> None:
        """`quotes=False`: no line is a `>` quote (the caller has checked), so none is looked at."""
        self.lines = lines
        self.quote_next = [False] * (len(lines) + 1)
        self.quoted = [False] * len(lines)
        # Every attribution ends with a colon; most lines end with none.
        self.colon = [line.rstrip().endswith(":") for line in lines]
        if not quotes:
            return
        for j in range(len(lines) - 1, -1, -1):
            stripped = lines[j].lstrip()
            self.quoted[j] = stripped.startswith(">")
            self.quote_next[j] = self.quoted[j] if stripped else self.quote_next[j + 1]

    def quote_follows(self, start: int) -> bool:
        """The next non-blank line from `start` on is a `>` quote."""
        return self.quote_next[min(start, len(self.lines))]

    def attribution(self, i: int) -> int:
        """How many lines (0 to 3) from `i` on form an attribution.

        Known phrasings (`On ... wrote:`, `Am ... schrieb`) count anywhere; a line that only
        has the shape of one counts where a `>` quote follows it.
        """
        lines = self.lines
        if not any(self.colon[i : i + _WRAPPED]) or not lines[i].strip():
            return 0
        for span in range(1, _WRAPPED + 1):
            last = i + span - 1
            if span > 1 and (last >= len(lines) or not lines[last].strip()):
                return 0
            if not self.colon[last]:
                continue
            text = " ".join(
                [lines[i].rstrip(), *(line.strip() for line in lines[i + 1 : last + 1])]
            )
            if len(text) > _MAX_ATTRIBUTION:
                return 0
            if any(k in text.lower() for k in _KEYWORDS) and _known(
                text, first=lines[i], span=span
            ):
                return span
            if self.quote_follows(i + span) and _shaped(text, first=lines[i]):
                return span
        return 0


def _known(text: str, *, first: str, span: int) -> bool:
    """One of the known phrasings; a wrapped one must start like one (no sentence above)."""
    if _ATTRIBUTION_START.match(text):
        return True
    return _known_ending(text) and (span == 1 or "@" in first)


def _known_ending(text: str) -> bool:
    """`Anna <a@b> wrote:`, `a@b.de schrieb:`, `... schrieb am 01.01.2026 10:00:` (Lotus
    Notes), `... hat am ... geschrieben:`. Plain string tests: linear, whatever the line."""
    low = text.lower()
    head = low.rstrip()[:-1].rstrip()  # without the final colon
    for verb in ("wrote", "schrieb"):
        if head.endswith(verb):
            words = head[: -len(verb)].split()
            address = words[-1].strip("<>()[]\"',;") if words else ""
            user, at, domain = address.rpartition("@")
            return bool(at and user and "." in domain)
    return "schrieb am " in low or ("hat am " in low and head.endswith("geschrieben"))


def _shaped(text: str, *, first: str) -> bool:
    """Shaped like an attribution in any language: a date first, an address or a time."""
    return bool(_DATE.search(first)) and bool(_ADDRESS_OR_TIME.search(text))


def _block_start(lines: list[str], i: int) -> int:
    """Where a header block found at `i` starts: header lines and a rule above belong to it.

    GMX and WEB.DE put `Gesendet:` above `Von:`; Outlook draws a line above the block.
    """
    j = i
    while j > 0 and _HEADER_LINE.match(lines[j - 1]):
        j -= 1
    k = j - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    return k if k >= 0 and _HEADER_RULE.match(lines[k]) else j


def _list_footer(lines: list[str], i: int) -> bool:
    """A rule of underscores followed by a mailing list's name or address (Mailman)."""
    following = [line for line in lines[i + 1 : i + 4] if line.strip()]
    return bool(following) and bool(_LIST_FOOTER.search(" ".join(following)))


def _scan(body: _Body) -> tuple[int, set[int]]:
    """Where quoted history or the signature starts, and attribution lines to drop before it.

    An attribution followed by `>` quotes introduces a quote, not the end of the new text:
    a writer may answer below it (bottom-posting) or between the quotes. A rule of
    underscores after a quote, or before a list's name, starts a mailing list footer.
    Only lines that can start a cut are looked at: those a marker pattern may match, and
    those an attribution ending in a colon may start at.
    """
    lines = body.lines[:MAX_SCAN_LINES]
    dropped: set[int] = set()
    first_quote = next((i for i, q in enumerate(body.quoted[: len(lines)]) if q), len(lines))
    marked = {i for i, line in enumerate(lines) if _MAYBE_MARK.match(line)}
    colons = (i - back for i, c in enumerate(body.colon[: len(lines)]) if c for back in (2, 1, 0))
    for i in sorted(marked.union(j for j in colons if j >= 0)):
        if i in dropped:
            continue
        line = lines[i]
        if i in marked:
            if _SIGNATURE.match(line) or _SEPARATOR.match(line) or _MOBILE_SIG.match(line):
                return i, dropped
            if _RULE.match(line) and (i >= first_quote or _list_footer(lines, i)):
                return i, dropped
        span = body.attribution(i)
        if span:
            if not body.quote_follows(i + span):
                return i, dropped
            dropped.update(range(i, i + span))
            continue
        if i in marked and _FROM_LINE.match(line):
            following = body.lines[i + 1 : i + 6]
            if sum(1 for f in following if _HEADER_LINE.match(f)) >= 2:
                return _block_start(body.lines, i), dropped
    return len(body.lines), dropped


def extract_reply(body: str) -> str:
    """The text the writer added, without quoted history, quote lines and signature."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = body.split("\n")
    # Only the head is scanned; a huge body without a cut in it keeps its tail as it is.
    head, tail = lines[: MAX_SCAN_LINES + _WRAPPED], lines[MAX_SCAN_LINES + _WRAPPED :]
    body_of = _Body(head, quotes=">" in body and _ANY_QUOTE.search(body) is not None)
    cut, dropped = _scan(body_of)
    # A quote between two answers leaves an empty line, so the answers stay apart.
    quoted = body_of.quoted
    kept = [
        "" if quoted[i] else line.rstrip() for i, line in enumerate(head[:cut]) if i not in dropped
    ]
    text = "\n".join(kept)
    if "\n\n\n" in text:
        text = re.sub(r"\n{3,}", "\n\n", text)
    if cut == len(head) and tail:
        text = text + "\n" + "\n".join(tail)
    return text.strip() + "\n" if text.strip() else ""
