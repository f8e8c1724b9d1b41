"""The portal's HTTP server: uvicorn in the daemon's own event loop, on a socket bound first.

The daemon accepts the connections itself (ticketmail.listen: no busy loop when descriptors
run out), refuses those over `web.max_connections` or `web.max_connections_per_ip` at once,
and hands the others to uvicorn's protocol, which closes a connection whose request headers
are not complete within `web.header_timeout_seconds` (web/_uvicorn.py).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
import uvicorn

from ticketmail.config import WebConfig
from ticketmail.errors import TicketmailError
from ticketmail.listen import BACKLOG, Listener
from ticketmail.ratelog import RateLog
from ticketmail.web._uvicorn import Server, WebProtocol
from ticketmail.web.connections import ConnectionCaps, Trusted

__all__ = ["WebServer"]

log = structlog.get_logger()

START_SECONDS = 10.0
STOP_SECONDS = 5.0
# An idle kept-alive connection is closed after this long.
KEEP_ALIVE_SECONDS = 5


class WebServer:
    """`start` binds host:port (an error there stops the daemon's start) and serves;
    `stop` lets requests under way finish (bounded)."""

    def __init__(self, app: Any, web: WebConfig) -> None:
        self.host = host = web.host
        port = web.port
        try:
            self._sock = socket.create_server((host, port), backlog=BACKLOG)
        except OSError as exc:
            raise TicketmailError(
                f"cannot listen on web {host}:{port}: {exc.strerror or exc}"
            ) from None
        # Accepted connections inherit TCP_NODELAY from this socket. asyncio sets it only on
        # sockets made with proto IPPROTO_TCP, which create_server's are not (proto 0): without
        # it a response's body waits for the ACK of its headers (Nagle), up to 40 ms.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self._server = Server(
            uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off",
                timeout_graceful_shutdown=int(STOP_SECONDS), server_header=False,
                http=WebProtocol, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                proxy_headers=True, forwarded_allow_ips=list(web.forwarded_allow_ips),
            )
        )  # fmt: skip
        self._header_seconds = web.header_timeout_seconds
        self._caps = ConnectionCaps(
            total=web.max_connections,
            per_source=web.max_connections_per_ip,
            proxies=Trusted(web.forwarded_allow_ips),
        )
        self._rate_log = RateLog()
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._sock.fileno()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self) -> None:
        # uvicorn serves no socket of its own: the listener hands it the connections.
        self._task = asyncio.create_task(self._server.serve(sockets=[]), name="web")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_SECONDS
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the web server stopped while starting")
            if loop.time() > deadline:
                raise RuntimeError("the web server did not start in time")
            await asyncio.sleep(0.01)
        self._listener = Listener([self._sock], self._admit, name="web", abandoned=_release)
        self._listener.start()
        log.info("web_started", host=self.host, port=self.port)

    def _admit(self, peer: tuple[str, int]) -> WebProtocol | None:
        """A connection within the caps gets its protocol; one over them is closed at once."""
        host = peer[0]
        refused = self._caps.take(host)
        if refused is not None:
            self._rate_log.warning(
                "web_connection_refused", refused, peer=host, open=self._caps.open,
                limit=self._caps.total if refused == "total" else self._caps.per_source,
            )  # fmt: skip
            return None
        return WebProtocol(
            self._server,
            header_seconds=self._header_seconds,
            on_close=lambda: self._caps.give_back(host),
            rate_log=self._rate_log,
        )

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # closes the listening socket: new connects are refused
        task = self._task
        if task is None:
            self._sock.close()
            return
        self._server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS + 1)
        if not done:
            self._server.force_exit = True
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        self._task = None
        self._sock.close()
        log.info("web_stopped")


def _release(protocol: asyncio.Protocol) -> None:
    """A connection admitted but never made: its place under the caps is free again."""
    if isinstance(protocol, WebProtocol):
        protocol.release()
