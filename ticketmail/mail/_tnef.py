"""The files inside a winmail.dat (application/ms-tnef): its attachment records, nothing more.

Outlook and Exchange wrap attachments in a TNEF stream (MS-OXTNEF). This reader walks the
attribute records once, in linear time, and takes from each attachment its name, MIME type
and bytes. Message bodies (RTF) and calendar data are left alone: when a stream holds
something that is no plain file (an embedded message, an OLE object), the reader says so,
and the caller keeps the winmail.dat itself as well.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ticketmail.mail.charsets import decode_bytes

__all__ = ["SIGNATURE", "TnefContents", "TnefFile", "is_tnef", "read_tnef"]

SIGNATURE = 0x223E9F78
_HEAD = struct.Struct("<IH")  # signature, legacy key
_RECORD = struct.Struct("<BII")  # level, attribute tag (type << 16 | id), length
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_LEVEL_ATTACHMENT = 2
_MAX_NESTING = 3  # embedded messages inside embedded messages

# Attribute ids (the low word of an attribute tag).
_ATT_OEM_CODEPAGE = 0x9007
_ATT_ATTACH_REND_DATA = 0x9002  # opens the next attachment
_ATT_ATTACH_TITLE = 0x8010  # its short (8.3) file name
_ATT_ATTACH_DATA = 0x800F  # its bytes
_ATT_ATTACHMENT = 0x9005  # its MAPI properties

# MAPI property ids and types (MS-OXPROPS, MS-OXCDATA).
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PT_OBJECT = 0x000D
_PT_STRING8 = 0x001E
_PT_UNICODE = 0x001F
_PT_BINARY = 0x0102
_VARIABLE_TYPES = frozenset({_PT_OBJECT, _PT_STRING8, _PT_UNICODE, _PT_BINARY})
# Bytes a fixed-size value takes in the stream (2-byte values are padded to 4).
_FIXED_SIZES = {
    0x0001: 4,  # null
    0x0002: 4,  # int16
    0x0003: 4,  # int32
    0x0004: 4,  # float
    0x0005: 8,  # double
    0x0006: 8,  # currency
    0x0007: 8,  # application time
    0x000A: 4,  # error
    0x000B: 4,  # boolean
    0x0014: 8,  # int64
    0x0040: 8,  # file time
    0x0048: 16,  # GUID
}
_MULTI_VALUE = 0x1000
_NAMED = 0x8000
# An embedded message (PT_OBJECT) starts with the interface id of IMessage.
_IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")


@dataclass(frozen=True, slots=True)
class TnefFile:
    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class TnefContents:
    """The files found, and whether anything else (or damage) was left behind."""

    files: tuple[TnefFile, ...]
    complete: bool


@dataclass(slots=True)
class _Attachment:
    title: str = ""
    long_name: str = ""
    short_name: str = ""
    display_name: str = ""
    mime: str = ""
    data: bytes | None = None
    other: bool = False  # an embedded message or OLE object, not a file
    nested: tuple[TnefFile, ...] = ()  # the files of an embedded message

    def filename(self) -> str:
        return self.long_name or self.short_name or self.title or self.display_name


def is_tnef(data: bytes) -> bool:
    """The bytes start with the TNEF signature."""
    return len(data) >= _HEAD.size and _HEAD.unpack_from(data)[0] == SIGNATURE


def read_tnef(data: bytes, /, *, max_files: int) -> TnefContents:
    """Files of a TNEF stream; never raises. Damage ends the walk with complete=False."""
    files: list[TnefFile] = []
    complete = _read(memoryview(data), files, max_files=max_files, nesting=0)
    return TnefContents(tuple(files), complete)


def _read(view: memoryview, files: list[TnefFile], *, max_files: int, nesting: int) -> bool:
    if not is_tnef(bytes(view[: _HEAD.size])):
        return False
    codepage = "cp1252"
    attachments: list[_Attachment] = []
    complete = True
    offset = _HEAD.size
    end = len(view)
    while offset < end:
        if offset + _RECORD.size + 2 > end:
            complete = False  # a cut-off record
            break
        level, tag, length = _RECORD.unpack_from(view, offset)
        start = offset + _RECORD.size
        stop = start + length
        if stop + 2 > end:
            complete = False
            break
        value = view[start:stop]
        offset = stop + 2  # the checksum is not checked: a wrong one spoils no file
        attr = tag & 0xFFFF
        if attr == _ATT_OEM_CODEPAGE and length >= 4:
            codepage = f"cp{_U32.unpack_from(value)[0]}"
        elif level == _LEVEL_ATTACHMENT:
            if attr == _ATT_ATTACH_REND_DATA or not attachments:
                attachments.append(_Attachment())
            current = attachments[-1]
            if attr == _ATT_ATTACH_TITLE:
                current.title = _text(bytes(value), codepage)
            elif attr == _ATT_ATTACH_DATA:
                current.data = bytes(value)
            elif attr == _ATT_ATTACHMENT:
                complete &= _properties(value, current, codepage, max_files, nesting)
    for attachment in attachments:
        found = list(attachment.nested)
        if attachment.data is not None:
            mime = attachment.mime.strip().lower() or None
            found.append(TnefFile(attachment.filename(), mime, attachment.data))
        elif attachment.other:
            complete = False  # an embedded message's own text stays in the stream
        for file in found:
            if len(files) >= max_files:
                return False
            files.append(file)
    return complete


def _properties(
    view: memoryview, into: _Attachment, codepage: str, max_files: int, nesting: int
) -> bool:
    """Read an attachment's MAPI property list into `into`; False if it is damaged."""
    try:
        count = _U32.unpack_from(view)[0]
        offset = 4
        for _ in range(min(count, len(view))):  # every property takes at least 4 bytes
            ptype, pid = _U16.unpack_from(view, offset)[0], _U16.unpack_from(view, offset + 2)[0]
            offset += 4
            if pid >= _NAMED:
                offset += 16  # property set GUID
                kind = _U32.unpack_from(view, offset)[0]
                offset += 4
                if kind == 0:
                    offset += 4
                else:
                    size = _U32.unpack_from(view, offset)[0]
                    offset += 4 + _padded(size)
            values = 1
            multi = bool(ptype & _MULTI_VALUE)
            ptype &= ~_MULTI_VALUE
            if multi or ptype in _VARIABLE_TYPES:
                # Multi-valued and variable-size values are preceded by their count.
                values = _U32.unpack_from(view, offset)[0]
                offset += 4
            if ptype in _VARIABLE_TYPES:
                for _ in range(min(values, len(view))):
                    size = _U32.unpack_from(view, offset)[0]
                    offset += 4
                    if offset + size > len(view):
                        return False
                    item = view[offset : offset + size]
                    offset += _padded(size)
                    _take(pid, ptype, item, into, codepage, max_files, nesting)
            elif ptype in _FIXED_SIZES:
                offset += _FIXED_SIZES[ptype] * values
            else:
                return False  # an unknown type: its size, and so the rest, is unknowable
            if offset > len(view):
                return False
    except struct.error:
        return False
    return True


def _take(
    pid: int,
    ptype: int,
    item: memoryview,
    into: _Attachment,
    codepage: str,
    max_files: int,
    nesting: int,
) -> None:
    if ptype in (_PT_STRING8, _PT_UNICODE):
        text = _text(bytes(item), "utf-16-le" if ptype == _PT_UNICODE else codepage)
        if pid == _PR_ATTACH_LONG_FILENAME:
            into.long_name = text
        elif pid == _PR_ATTACH_FILENAME:
            into.short_name = text
        elif pid == _PR_DISPLAY_NAME:
            into.display_name = text
        elif pid == _PR_ATTACH_MIME_TAG:
            into.mime = text
    elif pid == _PR_ATTACH_DATA and ptype == _PT_BINARY:
        if into.data is None:
            into.data = bytes(item)
    elif pid == _PR_ATTACH_DATA and ptype == _PT_OBJECT:
        into.other = True
        iid = bytes(item[:16])
        if iid == _IID_IMESSAGE and nesting < _MAX_NESTING:
            # An embedded message (a forwarded Outlook item) is a TNEF stream of its own:
            # its files are unpacked; its text stays in the winmail.dat, which is kept.
            nested: list[TnefFile] = []
            _read(item[16:], nested, max_files=max_files, nesting=nesting + 1)
            into.nested = tuple(nested)


def _padded(size: int) -> int:
    return size + (-size % 4)


def _text(data: bytes, codec: str) -> str:
    return decode_bytes(data, codec).split("\x00", 1)[0].strip()
