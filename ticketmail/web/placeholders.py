"""The text modules' placeholders (SPEC 9.1): which a module may hold, and filling them in.

Only four exist: `{{ requester.name }}`, `{{ ticket.number }}`, `{{ ticket.subject }}` and
`{{ agent.name }}`, with any whitespace inside the braces. Anything else that opens a template
construct (`{{`, `{%`, `{#`) refuses the module when it is saved. Filling in is plain string
substitution in one pass: nothing is evaluated, no template engine runs, and a filled-in value
(a subject that itself holds `{{ … }}`) is never read again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

__all__ = ["PLACEHOLDERS", "fill", "foreign"]

PLACEHOLDERS = ("requester.name", "ticket.number", "ticket.subject", "agent.name")
_OPENER = re.compile(r"\{[{%#]")  # what opens a construct, as a template engine reads it
_CLOSER = {"{": "}}", "%": "%}", "#": "#}"}
_SHOWN = 60  # characters of a refused construct named in the error line
_NAMED = 3  # refused constructs named at most


def _constructs(body: str) -> Iterator[tuple[int, int, str | None]]:
    """(start, end, placeholder) of each construct from left to right, the way a template
    engine's lexer finds them: the leftmost opener up to its first closer (an unclosed one runs
    to the end); `placeholder` None: not one of PLACEHOLDERS."""
    pos = 0
    while (found := _OPENER.search(body, pos)) is not None:
        start = found.start()
        kind = body[start + 1]
        close = body.find(_CLOSER[kind], start + 2)
        if close == -1:
            yield start, len(body), None
            return
        inner = body[start + 2 : close].strip()
        yield start, close + 2, inner if kind == "{" and inner in PLACEHOLDERS else None
        pos = close + 2


def foreign(body: str, /) -> tuple[str, ...]:
    """The constructs of `body` that are not one of the placeholders (each as typed, cut to
    `_SHOWN` characters; at most `_NAMED`); empty: the module may be saved."""
    named: list[str] = []
    for start, end, placeholder in _constructs(body):
        if placeholder is not None:
            continue
        construct = body[start:end]
        if len(construct) > _SHOWN:
            construct = construct[: _SHOWN - 1] + "…"
        if construct not in named:
            named.append(construct)
        if len(named) == _NAMED:
            break
    return tuple(named)


def fill(body: str, /, *, values: Mapping[str, str]) -> str:
    """`body` with each placeholder replaced by its value (a key of PLACEHOLDERS), in one
    pass: the values are inserted as they are and never scanned again; anything else stays
    as it is (a saved module holds nothing else)."""
    pieces: list[str] = []
    done = 0
    for start, end, placeholder in _constructs(body):
        if placeholder is not None:
            pieces += (body[done:start], values[placeholder])
            done = end
    pieces.append(body[done:])
    return "".join(pieces)
