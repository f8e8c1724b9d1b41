"""Raw mail bytes to a ParsedMail: addresses, subject, text body, attachments. Never raises."""

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

from .charsets import decode_bytes, decode_header_value
from .htmltext import html_to_text
from .reply import extract_reply

__all__ = [
    "Attachment",
    "ParsedMail",
    "normalize_address",
    "parse_mail",
    "safe_filename",
]

MAX_DEPTH = 64
MAX_PARTS = 2000
MAX_HEADERS = 2000
MAX_FILENAME = 200
_MSGID = re.compile(r"<[^<>\s]{1,500}>")
# Control (Cc: NUL, C0, DEL, C1), format (Cf: bidi overrides, zero-width characters, BOM),
# surrogates (Cs: undecodable bytes) and line or paragraph separators never show in a name.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_EDGE_DOTS_AND_SPACE = re.compile(r"^[\s.]+|\s+$")


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
    """A display name for a file: no path, no control or direction characters, bounded."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _EDGE_DOTS_AND_SPACE.sub("", name)
    if not name:
        return fallback
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes, never raise.

    The MIME structure comes from the compat32 parser: headers are decoded here from their
    raw form (more tolerant than email.policy.default, which also parses every header on
    access and costs 4-7x the time on large mails). If extraction still fails, the default
    policy is tried, then the header block alone.
    """
    for policy in (email.policy.compat32, email.policy.default):
        try:
            msg = BytesParser(policy=policy).parsebytes(raw)
            return _extract(msg, raw)
        except Exception:  # noqa: S112 - the next, more lenient way is tried
            continue
    return _minimal(raw)


def _minimal(raw: bytes) -> ParsedMail:
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
        defects=("unparseable",),
    )


def _message_id(value: str, raw: bytes) -> str:
    found = _MSGID.search(value)
    if found:
        return found.group(0)
    # A deterministic stand-in: the same bytes delivered twice get the same id.
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@ticketmail.invalid>"


def _raw_headers(msg: Message) -> list[tuple[str, str]]:
    """Header (name, value) pairs as sent; raw 8-bit bytes become text (UTF-8, else cp1252)."""
    items = msg.raw_items() if hasattr(msg, "raw_items") else msg.items()
    return [
        (_clean(str(name)).lower(), _clean(str(value))) for name, value in list(items)[:MAX_HEADERS]
    ]


def _clean(value: str) -> str:
    """Text without the surrogate escapes BytesParser leaves for undecodable bytes."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", errors="surrogateescape"), "utf-8")
    return value


def _first(raw_headers: list[tuple[str, str]], name: str) -> str:
    for hname, value in raw_headers:
        if hname == name:
            return value
    return ""


def _addresses(raw_headers: list[tuple[str, str]], name: str) -> tuple[str, ...]:
    values = [v for h, v in raw_headers if h == name]
    found: list[str] = []
    for _, addr in getaddresses([decode_header_value(v) for v in values]):
        norm = normalize_address(addr) if addr else ""
        if norm and "@" in norm and norm not in found:
            found.append(norm)
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


def _extract(msg: Message, raw: bytes) -> ParsedMail:
    raw_headers = _raw_headers(msg)
    decoded_headers = tuple((name, decode_header_value(value)) for name, value in raw_headers)
    from_raw = _first(raw_headers, "from")
    from_name, from_addr = parseaddr(_unfold(from_raw))
    if not from_addr and from_raw:
        from_addr = from_raw
    subject = decode_header_value(_first(raw_headers, "subject"))
    walker = _Walker(subject=subject)
    walker.visit(msg, depth=0)
    body = walker.body_text()
    defects = [type(d).__name__ for d in getattr(msg, "defects", [])][:20]
    defects.extend(walker.flags)
    return ParsedMail(
        message_id=_message_id(_first(raw_headers, "message-id"), raw),
        from_addr=normalize_address(from_addr) if from_addr else "",
        from_name=decode_header_value(from_name),
        to=_addresses(raw_headers, "to"),
        cc=_addresses(raw_headers, "cc"),
        subject=subject,
        date=_date(_first(raw_headers, "date")),
        in_reply_to=tuple(_MSGID.findall(_first(raw_headers, "in-reply-to")))[:20],
        references=tuple(_MSGID.findall(_first(raw_headers, "references")))[-50:],
        body_text=body,
        reply_text=extract_reply(body),
        attachments=tuple(walker.attachments),
        headers=decoded_headers,
        content_type=_content_type(msg),
        has_delivery_status=walker.delivery_status,
        defects=tuple(defects),
    )


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if isinstance(value, tuple):
        return str(value[2]) if value[2] is not None else None
    return str(value) if value is not None else None


def _disposition(part: Message) -> str:
    value = ""
    for name, raw in _raw_headers(part):
        if name == "content-disposition":
            value = raw
            break
    return value.split(";", 1)[0].strip().lower()


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        name = _param(part, "name")
    if name is None:
        return None
    name = str(name)
    if "=?" in name or not name.isascii():
        name = decode_header_value(name)
    return name


def _is_rendering(part: Message, ctype: str) -> bool:
    """A text alternative (plain, HTML, enriched, ...) rather than a file like an invitation."""
    return ctype.startswith("text/") and ctype != "text/calendar" and not _filename(part)


class _Walker:
    """Walks the MIME tree once: picks the text body, collects everything else as files."""

    def __init__(self, *, subject: str) -> None:
        self.subject = subject
        # Body parts in mail order; True marks HTML. An HTML part after a plain one is a file.
        self.texts: list[tuple[bool, str]] = []
        self.attachments: list[Attachment] = []
        self.flags: list[str] = []
        self.delivery_status = False
        self.parts_seen = 0

    def body_text(self) -> str:
        texts = (html_to_text(t) if is_html else t for is_html, t in self.texts)
        text = "\n".join(t.rstrip("\n") for t in texts)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text.rstrip() + "\n" if text.strip() else ""

    def visit(self, part: Message, *, depth: int, body: bool = True) -> None:
        """Visit one part; with body=False its text parts are a rendering not chosen."""
        self.parts_seen += 1
        if self.parts_seen > MAX_PARTS:
            if "too_many_parts" not in self.flags:
                self.flags.append("too_many_parts")
            return
        if depth > MAX_DEPTH:
            if "too_deep" not in self.flags:
                self.flags.append("too_deep")
            return
        ctype = _content_type(part)
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
        types = [_content_type(c) for c in children]
        candidates = [
            i
            for t in ("text/plain", "multipart/related", "multipart/mixed", "text/html")
            for i, (child, ctype) in enumerate(zip(children, types, strict=True))
            if ctype == t and not (t == "text/plain" and not self._payload(child).strip())
        ]
        chosen = candidates[0] if candidates else 0
        for index, (child, ctype) in enumerate(zip(children, types, strict=True)):
            if index == chosen:
                self.visit(child, depth=depth + 1, body=body)
            elif not _is_rendering(child, ctype):
                self.visit(child, depth=depth + 1, body=False)

    def _payload(self, part: Message) -> bytes:
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
        filename = _filename(part)
        if ctype == "message/rfc822":
            self._attach_message(part, filename)
            return
        text_part = (
            ctype in ("text/plain", "text/html")
            and not filename
            and _disposition(part) != "attachment"
        )
        if text_part and not body:
            return  # the text of an alternative rendering not chosen
        data = self._payload(part)
        plain_seen = any(not is_html for is_html, _ in self.texts)
        if text_part and not (ctype == "text/html" and plain_seen):
            text = decode_bytes(data, _param(part, "charset"))
            if text.strip():  # an empty text part leaves the body to the next one
                self.texts.append((ctype == "text/html", text))
            return
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
            subject = decode_header_value(str(inner_msg.get("subject", "") or ""))
        else:
            data = self._payload(part)
        stem = safe_filename(subject, fallback="forwarded-message")
        fallback = safe_filename(stem + ".eml", fallback="forwarded-message.eml")
        name = safe_filename(filename, fallback=fallback) if filename else fallback
        self.attachments.append(Attachment(name, "message/rfc822", data, self._cid(part)))

    def _attach(self, part: Message, ctype: str, data: bytes, filename: str | None) -> None:
        number = len(self.attachments) + 1
        ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
        fallback = f"attachment-{number}{ext}"
        name = safe_filename(filename, fallback=fallback) if filename else fallback
        self.attachments.append(Attachment(name, ctype, data, self._cid(part)))

    def _cid(self, part: Message) -> str | None:
        for name, value in _raw_headers(part):
            if name == "content-id":
                found = _MSGID.search(value)
                cid = found.group(0) if found else value.strip()
                return cid[:500] or None
        return None
