"""uvicorn's internals ticketmail relies on, all of them here: pinned in pyproject.toml and
checked by tests/test_uvicorn_pin.py.

uvicorn has no timeout for a request's headers. Its `http=` setting takes a protocol class:
`WebProtocol` is uvicorn's h11 protocol with a timer that runs while the client has not sent
a request's complete headers (from the connection's start, and again from the end of each
response while the connection is kept alive). The daemon accepts the connections itself
(ticketmail.listen) and builds each one's `WebProtocol` itself, so uvicorn's server
runs without a socket of its own: it keeps the Date header current and shuts the
connections down (they join its `server_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ticketmail.ratelog import RateLog

__all__ = ["PRIVATE_NAMES", "Server", "WebProtocol"]

# uvicorn's names used here that its documentation does not promise (the pin's comment in
# pyproject.toml names them too).
PRIVATE_NAMES = (
    "H11Protocol", "capture_signals", "conn", "on_response_complete", "server_state",
)  # fmt: skip


class Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the daemon owns SIGTERM and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebProtocol(H11Protocol):
    """One HTTP connection: uvicorn's h11 protocol, closed when a request's headers are not
    complete within `header_seconds`; `on_close` is called once when it ends."""

    def __init__(
        self, server: uvicorn.Server, *, header_seconds: float, on_close: Callable[[], None],
        rate_log: RateLog,
    ) -> None:  # fmt: skip
        super().__init__(config=server.config, server_state=server.server_state, app_state={})
        self.header_seconds = header_seconds
        self.web_transport: asyncio.Transport | None = None
        self.header_timer: asyncio.TimerHandle | None = None
        self.on_close: Callable[[], None] | None = on_close
        self.rate_log = rate_log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.web_transport = transport
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self.release()
        super().connection_lost(exc)

    def release(self) -> None:
        """Tell `on_close` (once) that this connection is gone."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def _watch_headers(self) -> None:
        """The timer runs while a request's headers are awaited (h11: the client is IDLE)."""
        if not self._awaiting_headers():
            self._stop_header_timer()
        elif self.header_timer is None:
            self.header_timer = asyncio.get_running_loop().call_later(
                self.header_seconds, self._headers_late
            )

    def _awaiting_headers(self) -> bool:
        transport = self.web_transport
        return (
            transport is not None
            and not transport.is_closing()
            and self.conn.their_state is h11.IDLE
        )

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        transport = self.web_transport
        if transport is None or not self._awaiting_headers():
            return
        peer: Any = transport.get_extra_info("peername")
        self.rate_log.warning(
            "web_connection_closed", "header_timeout",
            peer=peer[0] if peer else "unknown", seconds=self.header_seconds,
        )  # fmt: skip
        transport.close()
