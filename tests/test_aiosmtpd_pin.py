"""aiosmtpd's private names in ticketmail: pinned, still what they were, used in one module only."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosmtpd
import aiosmtpd.lmtp
import aiosmtpd.smtp
import pytest
from aiosmtpd.smtp import SMTP
from conftest import REPO

from ticketmail.smtp._private import PRIVATE_NAMES

PACKAGE = REPO / "ticketmail"
PRIVATE_MODULE = PACKAGE / "smtp" / "_private.py"
WHERE = "ticketmail/smtp/_private.py"
# A private name as an attribute (`x._name`), a definition (`def _name`) or a string
# (`getattr(x, "_name")`).
_USE = re.compile(r"""(?:\.|\bdef\s+|["'])(_[a-z]\w*)""")


def _aiosmtpd_private_names() -> set[str]:
    """Every `_name` (lower case after the underscore) of aiosmtpd's SMTP and LMTP objects."""
    names = {n for cls in (aiosmtpd.smtp.SMTP, aiosmtpd.lmtp.LMTP) for n in dir(cls)}
    for module in (aiosmtpd.smtp, aiosmtpd.lmtp):
        names |= set(re.findall(r"\bself\.(_[a-z]\w*)", inspect.getsource(module)))
    return {n for n in names if re.fullmatch(r"_[a-z]\w*", n)}


def _defined_in(source: str) -> set[str]:
    """Private names a module gives values of its own (`self._x =`, `def _x`, `_x =`)."""
    return set(re.findall(r"(?:\bself\.|\bdef\s+|^)(_[a-z]\w*)\s*[:=(]", source, re.MULTILINE))


def _pin_comment() -> str:
    """The comment lines right above the aiosmtpd requirement in pyproject.toml."""
    lines = (REPO / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith('"aiosmtpd'))
    comment: list[str] = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("#"):
            break
        comment.insert(0, line.strip())
    return "\n".join(comment)


def test_pin_comment_names_exactly_the_private_names_in_use() -> None:
    """pyproject.toml's aiosmtpd pin names exactly the private names _private.py uses."""
    private = _aiosmtpd_private_names()
    used = set(_USE.findall(PRIVATE_MODULE.read_text(encoding="utf-8"))) & private
    named = set(re.findall(r"(?<![\w/.])_[a-z]\w*", _pin_comment()))
    assert named == set(PRIVATE_NAMES), (
        f"the aiosmtpd pin in pyproject.toml names {sorted(named)}, "
        f"{WHERE} declares PRIVATE_NAMES = {sorted(PRIVATE_NAMES)}"
    )
    assert used == set(PRIVATE_NAMES), (
        f"{WHERE} uses aiosmtpd's {sorted(used)} but declares {sorted(PRIVATE_NAMES)}"
    )


def test_no_other_module_of_ticketmail_uses_an_aiosmtpd_private_name() -> None:
    """Outside _private.py no module touches (or overrides) a private name of aiosmtpd's."""
    private = _aiosmtpd_private_names()
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PRIVATE_MODULE:
            continue
        source = path.read_text(encoding="utf-8")
        hits = set(_USE.findall(source)) & private
        if "aiosmtpd" not in source:
            # A module that never imports aiosmtpd may have a `_reader` of its own (the store
            # does); only a name it uses without defining it can be aiosmtpd's.
            hits -= _defined_in(source)
        if hits:
            found[str(path.relative_to(REPO))] = sorted(hits)
    assert found == {}, (
        f"aiosmtpd's private names outside {WHERE}: {found}; move that use into {WHERE}, "
        "list the name in its PRIVATE_NAMES and in the aiosmtpd pin in pyproject.toml"
    )


# --- each pinned name is still what _private.py relies on -------------------------------------


async def _check_getaddr() -> None:
    """SMTP._getaddr(self, arg) -> (address, rest), called by smtp_MAIL and smtp_RCPT."""
    method = getattr(SMTP, "_getaddr", None)
    assert callable(method), "SMTP._getaddr is gone"
    assert list(inspect.signature(method).parameters) == ["self", "arg"], (
        f"SMTP._getaddr{inspect.signature(method)} takes other arguments"
    )
    for verb in ("smtp_MAIL", "smtp_RCPT"):
        assert "self._getaddr(arg)" in inspect.getsource(getattr(SMTP, verb)), (
            f"SMTP.{verb} no longer parses its path with self._getaddr(arg)"
        )
    probe = object.__new__(SMTP)
    probe.local_part_limit = 0
    assert method(probe, "<a@b.example> SIZE=1") == ("a@b.example", "SIZE=1"), (
        "SMTP._getaddr returns something other than (address, rest)"
    )


async def _check_reader() -> None:
    """A connected SMTP's `_reader` is the asyncio.StreamReader its commands are read from."""
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocols.append(SMTP(object(), hostname="pin.test"))
        return protocols[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220")
            (protocol,) = protocols
            stream = getattr(protocol, "_reader", None)
            assert isinstance(stream, asyncio.StreamReader), (
                f"SMTP._reader of a connected session is {type(stream).__name__}, "
                "not an asyncio.StreamReader"
            )
            writer.write(b"NOOP")
            await writer.drain()
            writer.write(b"\r\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"250 OK\r\n"
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "_getaddr": _check_getaddr,
    "_reader": _check_reader,
}


@pytest.mark.parametrize("name", PRIVATE_NAMES)
async def test_pinned_private_name_is_still_what_ticketmail_relies_on(name: str) -> None:
    """Each pinned private name exists on the installed aiosmtpd as _private.py uses it."""
    check = CHECKS.get(name)
    assert check is not None, f"{name} is pinned but has no check here: add one to CHECKS"
    try:
        await check()
    except AssertionError as exc:
        raise AssertionError(
            f"aiosmtpd {aiosmtpd.__version__} changed its private {name}: {exc}. "
            f"Update {WHERE} (and the aiosmtpd pin in pyproject.toml) for this release."
        ) from None


def test_every_check_is_for_a_pinned_name() -> None:
    """No check here for a private name that is no longer pinned (the list stays exact)."""
    assert set(CHECKS) == set(PRIVATE_NAMES)


def test_smtp_package_has_no_type_ignore_outside_the_private_module() -> None:
    """`# type: ignore` in smtp/ only where aiosmtpd's private names are, in _private.py."""
    ignored = [
        f"{path.name}:{n}"
        for path in sorted((PACKAGE / "smtp").glob("*.py"))
        if path != PRIVATE_MODULE
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1)
        if "type: ignore" in line
    ]
    assert ignored == []
