"""uvicorn's internal names in ticketmail: pinned, still what they were, used in one module only."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket

import h11
import pytest
import uvicorn
import uvicorn.protocols.http.h11_impl
from conftest import REPO

from ticketmail.ratelog import RateLog
from ticketmail.web._uvicorn import PRIVATE_NAMES, WebProtocol

PACKAGE = REPO / "ticketmail"
PRIVATE_MODULE = PACKAGE / "web" / "_uvicorn.py"
WHERE = "ticketmail/web/_uvicorn.py"
# Names only the internals carry (`conn` is too common a word to look for elsewhere).
DISTINCT = {n for n in PRIVATE_NAMES if n != "conn"}


def _pin_comment() -> str:
    """The comment lines right above the uvicorn requirement in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'((?:^[ \t]*#.*\n)+)[ \t]*"uvicorn', text, re.MULTILINE)
    return found.group(1) if found else ""


def _fail(name: str, problem: str) -> AssertionError:
    return AssertionError(
        f"uvicorn {uvicorn.__version__} changed {name}: {problem}. Update {WHERE} (and the "
        "uvicorn pin in pyproject.toml) for this release."
    )


def test_pin_comment_names_exactly_the_internal_names_in_use() -> None:
    """pyproject.toml's uvicorn pin names the internal names _uvicorn.py declares, and
    _uvicorn.py uses each of them."""
    words = set(re.findall(r"\w+", _pin_comment()))
    assert set(PRIVATE_NAMES) <= words, (
        f"the uvicorn pin's comment in pyproject.toml must name {sorted(PRIVATE_NAMES)}"
    )
    source = PRIVATE_MODULE.read_text(encoding="utf-8")
    unused = [n for n in PRIVATE_NAMES if not re.search(rf"\b{n}\b", source.split('"""', 2)[2])]
    assert unused == [], f"{WHERE} declares {unused} but does not use them"


def test_no_other_module_reaches_into_uvicorn() -> None:
    """Outside _uvicorn.py no module imports a uvicorn submodule or names its internals."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PRIVATE_MODULE:
            continue
        source = path.read_text(encoding="utf-8")
        hits = sorted(set(re.findall(r"\buvicorn\.[a-z_]+\b", source)))
        hits += sorted(n for n in DISTINCT if re.search(rf"\b{n}\b", source))
        if "uvicorn" in source:
            hits += ["class (uvicorn.Server)"] if "(uvicorn.Server)" in source else []
        if hits:
            found[str(path.relative_to(REPO))] = hits
    assert found == {}, f"uvicorn's internals outside {WHERE}: {found}; move them there"


# --- each pinned name is still what _uvicorn.py relies on ---------------------------------------


async def _app(scope: dict[str, object], receive: object, send: object) -> None:
    assert callable(send)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_h11_protocol_is_built_and_driven_as_web_protocol_expects() -> None:
    """H11Protocol takes (config, server_state, app_state); its `conn` is the h11 connection
    (the client IDLE until a request's headers are complete); `on_response_complete` runs
    after each response; a connection joins the server's `server_state.connections`."""
    params = list(inspect.signature(uvicorn.protocols.http.h11_impl.H11Protocol).parameters)
    if params[:3] != ["config", "server_state", "app_state"]:
        raise _fail("H11Protocol", f"it takes {params}")
    server = uvicorn.Server(uvicorn.Config(_app, http=WebProtocol, lifespan="off", log_config=None))
    state = getattr(server, "server_state", None)
    if state is None or not isinstance(getattr(state, "connections", None), set):
        raise _fail("Server.server_state", "it has no set of connections")
    server.config.load()
    protocol = WebProtocol(server, header_seconds=30, on_close=lambda: None, rate_log=RateLog())
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    try:
        theirs.setblocking(False)
        await loop.connect_accepted_socket(lambda: protocol, ours)
        await asyncio.sleep(0)
        if not isinstance(getattr(protocol, "conn", None), h11.Connection):
            raise _fail("H11Protocol.conn", "it is not an h11.Connection")
        if protocol not in state.connections:
            raise _fail("H11Protocol.connection_made", "the server's connections lack it")
        await loop.sock_sendall(theirs, b"GET / HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.05)
        assert protocol.conn.their_state is h11.IDLE, "headers incomplete, client not IDLE"
        assert protocol.header_timer is not None, "no header timer while headers are awaited"
        await loop.sock_sendall(theirs, b"\r\n")
        answer = await asyncio.wait_for(loop.sock_recv(theirs, 1024), 5)
        assert answer.startswith(b"HTTP/1.1 204 "), answer
        await asyncio.sleep(0.05)
        if protocol.conn.their_state is not h11.IDLE:
            raise _fail("H11Protocol.on_response_complete", "no next cycle after a response")
        assert protocol.header_timer is not None, "the next request's headers are not timed"
    finally:
        theirs.close()
        await asyncio.sleep(0.05)
    assert protocol not in state.connections


def test_serve_still_captures_signals_through_the_method_server_overrides() -> None:
    """uvicorn.Server.serve installs its signal handlers in capture_signals(), which
    _uvicorn.Server replaces (the daemon owns SIGTERM and SIGHUP)."""
    if "self.capture_signals()" not in inspect.getsource(uvicorn.Server.serve):
        raise _fail("Server.serve", "it no longer installs its signal handlers in capture_signals")


@pytest.mark.parametrize("name", ["connection_made", "data_received", "on_response_complete"])
def test_the_methods_web_protocol_extends_are_uvicorns(name: str) -> None:
    """WebProtocol extends methods H11Protocol still has (an override of nothing does nothing)."""
    base = uvicorn.protocols.http.h11_impl.H11Protocol
    if not callable(getattr(base, name, None)):
        raise _fail(f"H11Protocol.{name}", "it is gone")
    assert name in WebProtocol.__dict__
