"""The text modules' placeholders (SPEC 9.1), property-based: a module is refused unless every
construct in it is one of the four placeholders, and filling one in is plain substitution that
evaluates nothing (jinja2's own lexer, never a renderer, is the oracle)."""

from __future__ import annotations

import jinja2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ticketmail.web.placeholders import PLACEHOLDERS, fill, foreign

# Values that name no placeholder and hold no brace: where they appear, a placeholder was filled.
SENTINELS = {p: f"<{i}>" for i, p in enumerate(PLACEHOLDERS)}
LEXER = jinja2.Environment(
    keep_trailing_newline=True, autoescape=True
)  # lexes only; nothing is rendered
SPACE = st.text(alphabet=" \t\n", max_size=3)
PLAIN = st.text(alphabet=st.characters(blacklist_characters="{\r"), max_size=30)
PIECES = "{}%#-|.()'\"_ \nxs" + "requstinamebkd" + "\u00e4"


def placeholder(name: str, before: str, after: str) -> str:
    return "{{" + before + name + after + "}}"


def by_the_lexer(body: str) -> str | None:
    """`body` filled in as jinja2's lexer reads it: its data as it is, each {{ a.b }} of the
    four replaced by its sentinel; None when the lexer sees anything else (a block, a
    comment, a filter, another name, an error)."""
    out: list[str] = []
    inside: list[str] | None = None
    try:
        for _, kind, value in LEXER.lex(body):
            if kind == "whitespace":
                continue
            if inside is None and kind == "data":
                out.append(value)
            elif inside is None and kind == "variable_begin":
                inside = []
            elif inside is not None and (kind == "name" or (kind, value) == ("operator", ".")):
                inside.append(value)
            elif inside is not None and kind == "variable_end":
                name = "".join(inside)
                if name not in SENTINELS:
                    return None
                out.append(SENTINELS[name])
                inside = None
            else:
                return None
    except jinja2.TemplateSyntaxError:
        return None
    return None if inside is not None else "".join(out)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            PLAIN,
            st.builds(placeholder, st.sampled_from(PLACEHOLDERS), SPACE, SPACE),
        ),
        max_size=8,
    )
)
def test_a_body_of_text_and_the_four_placeholders_is_kept_and_filled(pieces: list[str]) -> None:
    """Text without braces and the four placeholders (any whitespace inside) may be saved;
    filling replaces exactly the placeholders and keeps every other character."""
    body = "".join(pieces)
    assert foreign(body) == ()
    expected = "".join(SENTINELS[p.strip("{} \t\n")] if p.startswith("{{") else p for p in pieces)
    assert fill(body, values=SENTINELS) == expected


@settings(max_examples=1500)
@given(st.text(alphabet=PIECES, max_size=40))
@example("{{ ''.__class__ }}")
@example("{{ config }}")
@example("{% for i in range(10**9) %}x{% endfor %}")
@example("{{ requester.name|upper }}")
@example("{# x #}")
@example("{{{ ticket.number }}")
@example("{{ ticket.subject }")
@example("{{- agent.name }}")
@example("{{ requester . name }}")
@example("{{requester.name}}}} %} #}")
def test_any_text_is_refused_or_filled_without_evaluating(body: str) -> None:
    """Whatever lies between braces: either the module is refused, naming what it holds, or
    jinja2's lexer too finds nothing but text and the four placeholders in it, and filling
    in gives exactly that text with the placeholders replaced."""
    named = foreign(body)
    if named:
        assert all(n.rstrip("…") in body for n in named)
        return
    assert by_the_lexer(body) == fill(body, values=SENTINELS)


@given(st.sampled_from(PLACEHOLDERS), st.text(max_size=40))
@example("ticket.subject", "{{ agent.name }} {{ 7*7 }} {% for x in y %}")
def test_a_filled_in_value_is_never_read_again(name: str, value: str) -> None:
    """A value (a subject of `{{ agent.name }}` or `{{ 7*7 }}`) goes in as it is: the output
    never has a placeholder of the value filled or anything in it computed."""
    values = {**SENTINELS, name: value}
    assert fill("a {{ " + name + " }} b", values=values) == f"a {value} b"
