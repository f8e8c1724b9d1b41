"""Raw mail bytes to a ParsedMail: addresses, subject, text body, attachments. Never raises.

Mails of absurd structure (thousands of parts, nesting hundreds deep, huge headers) are read
within the time bound: what lies beyond a limit stays only in the raw message, and the mail
carries a flag in `defects` that names the limit (see FLAGS).
"""

from __future__ import annotations

import email.policy
import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from ticketmail.mail._mime import (
    MAX_HEADERS,
    MAX_PARTS,
    charset_hint,
    content_type,
    declared_charset,
    disposition,
    filename_of,
    first,
    guess_type,
    header_pairs,
    is_rendering,
    misspelled_encoding,
    param,
    raw_items,
)
from ticketmail.mail._tnef import is_tnef, read_tnef
from ticketmail.mail._uuencode import split_uuencoded
from ticketmail.mail.charsets import (
    CharsetHint,
    decode_bytes,
    decode_header_value,
)
from ticketmail.mail.htmltext import html_to_text, trim_html
from ticketmail.mail.quoted import extract_reply

__all__ = [
    "FLAGS",
    "MAX_EXTRACTED_BYTES",
    "Attachment",
    "ParsedMail",
    "normalize_address",
    "parse_mail",
    "safe_filename",
]

MAX_DEPTH = 64  # nesting of multipart and message/rfc822 parts
# Parts handed to Python's parser at all (about 0.1 s per 1,000); the rest stays raw only.
MAX_PARSED_PARTS = 5000
MAX_HEADER_BYTES = 64 * 1024  # real mails stay under 10 KiB, long Received chains included
MAX_ADDRESSES = 1000  # per To or Cc
MAX_FILENAME = 200
MAX_BODY_CHARS = 5_000_000  # about 2,500 pages; a longer text body is cut at a line end
# Decoded attachment bytes per mail. Decoding never makes a part larger than its encoded
# form, so under the SMTP size limit (25 MiB) this trips only when that limit is raised.
MAX_EXTRACTED_BYTES = 64 * 1024 * 1024

# What ParsedMail.defects may name besides the class names of the parser's own defects.
FLAGS = {
    "too_many_parts": f"more than {MAX_PARTS} MIME parts: the rest is only in the raw message",
    "too_deep": f"parts nested deeper than {MAX_DEPTH} levels are kept unopened, as one file",
    "header_too_large": f"header block over {MAX_HEADER_BYTES} bytes",
    "too_many_addresses": f"more than {MAX_ADDRESSES} addresses in To or Cc: the rest dropped",
    "extracted_too_large": "files beyond the decoded-size budget are only in the raw message",
    "html_truncated": "HTML body too large to convert whole: its text is cut",
    "body_truncated": f"text body cut to {MAX_BODY_CHARS} characters",
    "tnef_unreadable": "a winmail.dat that is no readable TNEF stream, kept as it is",
    "unparseable": "no MIME parser could read the mail: only its header block is used",
}
_MSGID = re.compile(r"<[^<>\s]{1,500}>")
# Control (Cc: NUL, C0, DEL, C1), format (Cf: bidi overrides, zero-width characters, BOM),
# surrogates (Cs: undecodable bytes) and line or paragraph separators never show in a name.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_EDGE_DOTS_AND_SPACE = re.compile(r"^[\s.]+|[\s.]+$")
# Windows opens a device, not a file, under these names, also with an extension ("nul.txt",
# "COM1.tar.gz") or blanks before the dot ("CON .pdf"); the list is Microsoft's ("Naming
# Files, Paths, and Namespaces"), the test the one of Python's ntpath.isreserved.
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


class _RawHeaders(email.policy.Compat32):
    """compat32, except that a header value with 8-bit bytes reads as the string the parser
    made of it (undecodable bytes as surrogate escapes), not as an email.header.Header whose
    str() has turned each such byte into U+FFFD: parse.py decodes those bytes itself, with
    the charset the mail declares elsewhere or a guess (parameters such as a filename too)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_COMPAT32_RAW = _RawHeaders()


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None


@dataclass(frozen=True, slots=True)
class ParsedMail:
    message_id: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    body_text: str
    reply_text: str
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    content_type: str
    has_delivery_status: bool
    defects: tuple[str, ...]

    def header(self, name: str) -> tuple[str, ...]:
        """Every decoded value of one header, in order; the name is case-insensitive."""
        key = name.lower()
        return tuple(value for hname, value in self.headers if hname == key)


def normalize_address(value: str) -> str:
    """A mail address as ticketmail compares it: no display name, no brackets, case-folded."""
    _, addr = parseaddr(value)
    addr = (addr or value).strip().strip("<>").strip()
    return addr.casefold()


def safe_filename(name: str, *, fallback: str) -> str:
    """A display name for a file: no path, no control or direction characters, bounded.

    No leading or trailing dots or blanks, and no Windows device name (`CON`, `nul.txt`,
    `COM1.pdf`, ...): such a name gets a leading "_", so that a copy saved under it is a file.
    """
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _EDGE_DOTS_AND_SPACE.sub("", name)
    if not name:
        return fallback
    if name.partition(".")[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        name = "_" + name
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
        name = _EDGE_DOTS_AND_SPACE.sub("", name)  # the cut may end on a dot or a blank
    return name


def parse_mail(raw: bytes, /, *, max_extracted_bytes: int = MAX_EXTRACTED_BYTES) -> ParsedMail:
    """Parse raw RFC 5322 bytes, never raise.

    The MIME structure comes from the compat32 parser: headers are decoded here from their
    raw form (more tolerant than email.policy.default, which also parses every header on
    access and costs 4-7x the time on large mails). If extraction still fails, the default
    policy is tried, then the header block alone. The parser reads a reshaped copy when the
    structure is beyond the limits; the message id is always taken from the bytes as sent.
    """
    data, flags = _reshape(raw)
    if _header_size(raw) > MAX_HEADER_BYTES:
        flags.append("header_too_large")
    for policy in (_COMPAT32_RAW, email.policy.default):
        try:
            msg = BytesParser(policy=policy).parsebytes(data)
            return _extract(msg, raw, flags=flags, budget=max_extracted_bytes)
        except Exception:  # noqa: S112 - the next, more lenient way is tried
            continue
    return _minimal(raw, flags)


# --- structure limits, checked on the raw bytes before Python's parser sees them -----------------

# Lines the parser takes as header lines (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]+:|[ \t]")
_CTYPE = re.compile(rb"\s*([A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+)")
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))""", re.IGNORECASE)
_OPAQUE = b"Content-Type: application/octet-stream"


_HEADER_END = re.compile(rb"\n\r?\n")


def _header_size(raw: bytes) -> int:
    end = _HEADER_END.search(raw)  # stops at the first empty line, whichever line ends
    return end.start() if end else len(raw)


def _beyond_limits(raw: bytes) -> bool:
    """A cheap upper bound: could the mail have more parts or deeper nesting than allowed?"""
    if raw.count(b"\n--") > MAX_PARSED_PARTS:
        return True
    lowered = raw.lower()
    return lowered.count(b"multipart/") + lowered.count(b"message/rfc822") > MAX_DEPTH


def _reshape(raw: bytes) -> tuple[bytes, list[str]]:
    """Bytes Python's parser reads within the time bound, and the flags of what was cut.

    The parser recurses once per nesting level (a RecursionError near 1,000 levels) and
    checks every line against every open boundary. A container nested deeper than MAX_DEPTH
    becomes one opaque part (its bytes are kept as a file), and the message ends after
    MAX_PARSED_PARTS parts. The scan follows the parser's rules line by line, in linear time.
    A mail within the limits is returned unchanged.
    """
    if not _beyond_limits(raw):
        return raw, []
    out: list[bytes] = []
    flags: list[str] = []
    stack: list[tuple[bytes | None, bool]] = []  # open containers: (boundary, is digest)
    where: dict[bytes, int] = {}  # boundary -> innermost stack position
    in_header = True
    ctype_lines: list[int] = []  # positions in `out` of the current Content-Type field
    parts = 0
    for line in raw.splitlines(keepends=True):
        if in_header:
            blank = not line.strip(b"\r\n")
            if not blank and _HEADER_LINE.match(line):
                if line[:1] in b" \t":
                    if ctype_lines and ctype_lines[-1] == len(out) - 1:
                        ctype_lines.append(len(out))
                elif line[:13].lower() == b"content-type:":
                    ctype_lines = [len(out)]
                out.append(line)
                continue
            in_header = _open(out, ctype_lines, stack, flags)
            where = {b: i for i, (b, _) in enumerate(stack) if b is not None}
            ctype_lines = []
            if blank:
                out.append(line)
                continue
        if line.startswith(b"--") and where:
            mark = line.rstrip(b" \t\r\n")[2:]
            position = where.get(mark)
            closing = position is None and mark.endswith(b"--")
            if closing:
                position = where.get(mark[:-2])
            if position is not None:
                del stack[position + (0 if closing else 1) :]
                where = {b: i for i, (b, _) in enumerate(stack) if b is not None}
                if not closing:
                    parts += 1
                    if parts > MAX_PARSED_PARTS:
                        flags.append("too_many_parts")
                        break
                    in_header = True
        out.append(line)
    return b"".join(out), flags


def _open(
    out: list[bytes],
    ctype_lines: list[int],
    stack: list[tuple[bytes | None, bool]],
    flags: list[str],
) -> bool:
    """At the end of a header block: open its container, if any; True if headers follow."""
    field = b"".join(out[i] for i in ctype_lines)[13:] if ctype_lines else b""
    found = _CTYPE.match(field)
    in_digest = bool(stack) and stack[-1][1]
    ctype = found.group(1).lower() if found else b""
    if not ctype:
        ctype = b"message/rfc822" if in_digest else b"text/plain"
    boundary = _BOUNDARY.search(field)
    is_multipart = ctype.startswith(b"multipart/") and boundary is not None
    if not is_multipart and ctype != b"message/rfc822":
        return False
    if len(stack) >= MAX_DEPTH:
        # Too deep: the part becomes one opaque leaf, its inside unopened.
        if ctype_lines:
            first = out[ctype_lines[0]]
            eol = first[len(first.rstrip(b"\r\n")) :]
            out[ctype_lines[0]] = _OPAQUE + eol
            for i in ctype_lines[1:]:
                out[i] = b""
        else:  # a digest's default type: say it
            out.append(_OPAQUE + b"\n")
        if "too_deep" not in flags:
            flags.append("too_deep")
        return False
    if is_multipart and boundary is not None:
        stack.append((boundary.group(1) or boundary.group(2) or b"", ctype == b"multipart/digest"))
        return False
    stack.append((None, False))
    return True  # the header block of the enclosed message follows


# --- header fields -------------------------------------------------------------------------------


def _minimal(raw: bytes, flags: list[str]) -> ParsedMail:
    """Last resort for bytes no parser can read: keep what the header block says."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    text = decode_bytes(head, "utf-8")
    headers: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n(?![ \t])", text)[:MAX_HEADERS]:
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            headers.append((name.strip().lower(), decode_header_value(value)))
    get = dict(reversed(headers)).get
    sender = get("from", "")
    return ParsedMail(
        message_id=_message_id(get("message-id", ""), raw),
        from_addr=normalize_address(sender) if sender else "",
        from_name="",
        to=(),
        cc=(),
        subject=get("subject", ""),
        date=None,
        in_reply_to=(),
        references=(),
        body_text="",
        reply_text="",
        attachments=(),
        headers=tuple(headers),
        content_type="text/plain",
        has_delivery_status=False,
        defects=_unique([*flags, "unparseable"]),
    )


def _unique(flags: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(flags))


def _message_id(value: str, raw: bytes) -> str:
    found = _MSGID.search(value)
    if found:
        return found.group(0)
    # A deterministic stand-in: the same mail delivered twice gets the same id, also when an
    # MTA on the way (or a retry by another one) put more trace fields in front of it.
    digest = hashlib.sha256(_without_trace_fields(raw)).hexdigest()
    return f"<{digest[:40]}@ticketmail.invalid>"


# Header fields that MTAs on the way add, so a retry (by the same or another MTA) may carry
# other ones, or more: trace fields (RFC 5321 4.4: Received, Return-Path), what delivery
# agents write (Delivered-To, X-Original-To, Gmail's X-Received), SPF, DKIM/DMARC and ARC
# results of the receiving side (RFC 7208 Received-SPF, RFC 8601, RFC 8617) and spam-filter
# verdicts (X-Spam-*, whose score can change between attempts). A DKIM-Signature is not one:
# the sender's MTA signs once, and a retry carries the same signature.
_TRACE_FIELDS = frozenset(
    {
        b"received",
        b"x-received",
        b"return-path",
        b"delivered-to",
        b"x-original-to",
        b"received-spf",
        b"authentication-results",
        b"arc-seal",
        b"arc-message-signature",
        b"arc-authentication-results",
    }
)
_TRACE_PREFIXES = (b"x-spam-",)


def _without_trace_fields(raw: bytes) -> bytes:
    """The raw mail without the trace fields of its header block; the body byte for byte."""
    end = _header_size(raw)
    head, rest = raw[: end + 1], raw[end + 1 :]
    kept: list[bytes] = []
    keep = True
    for line in head.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):  # a field starts; a folded line goes with its field
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
            keep = name not in _TRACE_FIELDS and not name.startswith(_TRACE_PREFIXES)
        if keep:
            kept.append(line)
    return b"".join(kept) + rest


def _addresses(raw_headers: list[tuple[str, str]], name: str, flags: list[str]) -> tuple[str, ...]:
    values = [decode_header_value(v) for h, v in raw_headers if h == name]
    if sum(len(v) for v in values) > MAX_HEADER_BYTES:
        # Beyond this size the rest is not read at all (getaddresses is slow on huge lists).
        text = ", ".join(values)
        values = [text[: text.rfind(",", 0, MAX_HEADER_BYTES)]]
        flags.append("too_many_addresses")
    found: dict[str, None] = {}
    for _, addr in getaddresses(values):
        norm = addr.strip().strip("<>").strip().casefold()
        if not norm or "@" not in norm or norm in found:
            continue
        if len(found) >= MAX_ADDRESSES:
            flags.append("too_many_addresses")
            break
        found[norm] = None
    return tuple(found)


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(decode_header_value(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _extract(msg: Message, raw: bytes, *, flags: list[str], budget: int) -> ParsedMail:
    flags = list(flags)
    hint = charset_hint(msg, raw_items(msg), raw)
    raw_headers = header_pairs(msg, hint)
    decoded_headers = tuple(
        (name, decode_header_value(value, hint=hint)) for name, value in raw_headers
    )
    from_raw = first(raw_headers, "from")
    from_name, from_addr = parseaddr(_unfold(from_raw))
    if not from_addr and from_raw:
        from_addr = from_raw
    subject = decode_header_value(first(raw_headers, "subject"), hint=hint)
    to = _addresses(raw_headers, "to", flags)
    cc = _addresses(raw_headers, "cc", flags)
    walker = _Walker(subject=subject, budget=budget, hint=hint)
    walker.visit(msg, depth=0)
    body = walker.body_text()
    defects = [type(d).__name__ for d in getattr(msg, "defects", [])][:20]
    return ParsedMail(
        message_id=_message_id(first(raw_headers, "message-id"), raw),
        from_addr=normalize_address(from_addr) if from_addr else "",
        from_name=decode_header_value(from_name, hint=hint),
        to=to,
        cc=cc,
        subject=subject,
        date=_date(first(raw_headers, "date")),
        in_reply_to=tuple(_MSGID.findall(first(raw_headers, "in-reply-to")))[:20],
        references=tuple(_MSGID.findall(first(raw_headers, "references")))[-50:],
        body_text=body,
        reply_text=extract_reply(body),
        attachments=tuple(walker.attachments),
        headers=decoded_headers,
        content_type=content_type(msg),
        has_delivery_status=walker.delivery_status,
        defects=_unique([*defects, *flags, *walker.flags]),
    )


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


# --- MIME parts ----------------------------------------------------------------------------------


# A text/plain alternative is a stub, and the HTML one gives the text, below STUB_WORDS
# words when the HTML says twice as much and STUB_GAP words more (see _Walker._unless_stub).
STUB_WORDS = 30
STUB_GAP = 25
_LINK = re.compile(r"\S+://\S+|<[^<>\s]*>|\S+@\S+")
_WORDS = re.compile(r"\w+")


def _words(text: str) -> int:
    """Words of a text's own part (no quoted history), links and addresses not counted."""
    return len(_WORDS.findall(_LINK.sub(" ", extract_reply(text))))


class _Walker:
    """Walks the MIME tree once: picks the text body, collects everything else as files."""

    def __init__(self, *, subject: str, budget: int, hint: CharsetHint) -> None:
        self.subject = subject
        self.hint = hint
        # Body parts in mail order; True marks HTML. An HTML part after a plain one is a file.
        self.texts: list[tuple[bool, str]] = []
        self.attachments: list[Attachment] = []
        self.flags: list[str] = []
        self.delivery_status = False
        self.parts_seen = 0
        self.budget = budget

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)

    def body_text(self) -> str:
        texts: list[str] = []
        for is_html, text in self.texts:
            if is_html:
                html, cut = trim_html(text)
                if cut:
                    self.flag("html_truncated")
                text = html_to_text(html)
            texts.append(text.rstrip("\n"))
        text = "\n".join(texts)
        if len(text) > MAX_BODY_CHARS:
            end = text.rfind("\n", 0, MAX_BODY_CHARS)
            text = text[: end if end > 0 else MAX_BODY_CHARS]
            self.flag("body_truncated")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text.rstrip() + "\n" if text.strip() else ""

    def visit(self, part: Message, *, depth: int, body: bool = True) -> None:
        """Visit one part; with body=False its text parts are a rendering not chosen."""
        self.parts_seen += 1
        if self.parts_seen > MAX_PARTS:
            self.flag("too_many_parts")
            return
        if depth > MAX_DEPTH:
            self.flag("too_deep")
            return
        ctype = content_type(part)
        if ctype == "message/delivery-status":
            self.delivery_status = True
        if part.is_multipart() and ctype != "message/rfc822":
            payload = part.get_payload()
            if not isinstance(payload, list):
                return
            children = [c for c in payload if isinstance(c, Message)]
            if ctype == "multipart/alternative":
                self._visit_alternative(children, depth=depth, body=body)
            else:
                for child in children:
                    self.visit(child, depth=depth + 1, body=body)
            return
        self._leaf(part, ctype, body=body)

    def _visit_alternative(self, children: list[Message], *, depth: int, body: bool) -> None:
        """One rendering gives the text; files anywhere else (inline images, .ics) are kept."""
        types = [content_type(c) for c in children]
        candidates = [
            i
            for t in ("text/plain", "multipart/related", "multipart/mixed", "text/html")
            for i, (child, ctype) in enumerate(zip(children, types, strict=True))
            if ctype == t and not (t == "text/plain" and not self._payload(child).strip())
        ]
        chosen = candidates[0] if candidates else 0
        if children and types[chosen] == "text/plain":
            chosen = self._unless_stub(children, types, chosen)
        for index, (child, ctype) in enumerate(zip(children, types, strict=True)):
            if index == chosen:
                self.visit(child, depth=depth + 1, body=body)
            elif not is_rendering(child, ctype):
                self.visit(child, depth=depth + 1, body=False)

    def _unless_stub(self, children: list[Message], types: list[str], plain: int) -> int:
        """The HTML rendering's index instead of the plain one when the plain text is only a
        stub ("View this mail in your browser", a banner, a link): fewer than STUB_WORDS
        words, and the HTML's text at least twice as many and STUB_GAP more (both without
        quoted history). A short real answer stays: its HTML says no more than it does."""
        html = next((i for i, t in enumerate(types) if t == "text/html"), None)
        html_part = children[html] if html is not None else None
        if html_part is None:
            html = next((i for i, t in enumerate(types) if t == "multipart/related"), None)
            inner = children[html].get_payload() if html is not None else None
            if isinstance(inner, list):
                found = [c for c in inner if isinstance(c, Message)]
                html_part = next((c for c in found if content_type(c) == "text/html"), None)
        if html is None or html_part is None:
            return plain
        plain_words = _words(self._text(children[plain]))
        if plain_words >= STUB_WORDS:
            return plain
        html_text, _ = trim_html(self._text(html_part))
        html_words = _words(html_to_text(html_text))
        if html_words >= 2 * plain_words and html_words - plain_words >= STUB_GAP:
            return html
        return plain

    def _text(self, part: Message) -> str:
        return decode_bytes(self._payload(part), param(part, "charset"), hint=self.hint)

    def _payload(self, part: Message) -> bytes:
        misspelled = misspelled_encoding(part)
        if misspelled is not None:
            return misspelled
        try:
            data = part.get_payload(decode=True)
        except Exception:
            data = None
        if isinstance(data, bytes):
            return data
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload.encode("utf-8", errors="surrogateescape")
        return b""

    def _leaf(self, part: Message, ctype: str, *, body: bool) -> None:
        filename = filename_of(part, self.hint)
        if ctype == "message/rfc822":
            self._attach_message(part, filename)
            return
        text_part = (
            ctype in ("text/plain", "text/html")
            and not filename
            and disposition(part) != "attachment"
        )
        if text_part and not body:
            return  # the text of an alternative rendering not chosen
        data = self._payload(part)
        if ctype.startswith("multipart/") and not data.strip():
            return  # a container the parser could not open, with nothing inside
        plain_seen = any(not is_html for is_html, _ in self.texts)
        if text_part and not (ctype == "text/html" and plain_seen):
            text = decode_bytes(data, param(part, "charset"), hint=self.hint)
            if ctype == "text/plain":
                text = self._uudecode(text)
            if text.strip():  # an empty text part leaves the body to the next one
                self.texts.append((ctype == "text/html", text))
            return
        if ctype in _TNEF_TYPES or (filename or "").strip().lower() == "winmail.dat":
            self._attach_tnef(part, ctype, data, filename)
            return
        self._attach(part, ctype, data, filename)

    def _uudecode(self, text: str) -> str:
        """The text without its uuencoded blocks, whose files become attachments."""
        room = MAX_PARTS - len(self.attachments)
        rest, files = split_uuencoded(text, max_files=max(room, 0))
        for file in files:
            fallback = f"attachment-{len(self.attachments) + 1}.bin"
            name = safe_filename(file.filename, fallback=fallback)
            self._add(Attachment(name, guess_type(name), file.data, None))
        return rest

    def _attach_tnef(self, part: Message, ctype: str, data: bytes, filename: str | None) -> None:
        """A winmail.dat becomes the files it carries; kept itself when anything is left."""
        if not is_tnef(data):
            self.flag("tnef_unreadable")
            self._attach(part, ctype, data, filename)
            return
        room = MAX_PARTS - len(self.attachments)
        contents = read_tnef(data, max_files=max(room, 0))
        for file in contents.files:
            fallback = f"attachment-{len(self.attachments) + 1}.bin"
            name = safe_filename(file.filename, fallback=fallback)
            ftype = file.content_type or guess_type(name)
            self._add(Attachment(name, ftype, file.data, None))
        if not contents.files or not contents.complete:
            self._attach(part, ctype, data, filename)

    def _attach_message(self, part: Message, filename: str | None) -> None:
        inner = part.get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        data = b""
        subject = ""
        if isinstance(inner_msg, Message):
            try:
                data = inner_msg.as_bytes(policy=email.policy.compat32)
            except Exception:
                data = self._payload(part)
            subject = decode_header_value(
                str(inner_msg.get("subject", "") or ""), hint=_inner_hint(inner_msg, self.hint)
            )
        else:
            data = self._payload(part)
        stem = safe_filename(subject, fallback="forwarded-message")
        fallback = safe_filename(stem + ".eml", fallback="forwarded-message.eml")
        name = safe_filename(filename, fallback=fallback) if filename else fallback
        self._add(Attachment(name, "message/rfc822", data, self._cid(part)))

    def _attach(self, part: Message, ctype: str, data: bytes, filename: str | None) -> None:
        number = len(self.attachments) + 1
        ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
        fallback = f"attachment-{number}{ext}"
        name = safe_filename(filename, fallback=fallback) if filename else fallback
        self._add(Attachment(name, ctype, data, self._cid(part)))

    def _add(self, attachment: Attachment) -> None:
        """Keep a file while the decoded-size budget lasts."""
        if len(attachment.data) > self.budget:
            self.flag("extracted_too_large")
            return
        self.budget -= len(attachment.data)
        self.attachments.append(attachment)

    def _cid(self, part: Message) -> str | None:
        for name, value in header_pairs(part):
            if name == "content-id":
                found = _MSGID.search(value)
                cid = found.group(0) if found else value.strip()
                return cid[:500] or None
        return None


def _inner_hint(inner: Message, outer: CharsetHint) -> CharsetHint:
    """An enclosed message's own declared charset, else what the enclosing mail tells."""
    declared = declared_charset(inner, raw_items(inner))
    return outer if declared is None else CharsetHint(declared=declared, guessed=outer.guessed)
