"""The portal's HTTP server: uvicorn in the daemon's own event loop, on a socket bound first."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn

from ticketmail.errors import TicketmailError

__all__ = ["WebServer"]

log = structlog.get_logger()

START_SECONDS = 10.0
STOP_SECONDS = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the daemon owns SIGTERM and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """`start` binds host:port (an error there stops the daemon's start) and serves;
    `stop` lets requests under way finish (bounded)."""

    def __init__(self, app: Any, *, host: str, port: int) -> None:
        self.host = host
        try:
            self._sock = socket.create_server((host, port))
        except OSError as exc:
            raise TicketmailError(
                f"cannot listen on web {host}:{port}: {exc.strerror or exc}"
            ) from None
        # Accepted connections inherit TCP_NODELAY from this socket. asyncio sets it only on
        # sockets made with proto IPPROTO_TCP, which create_server's are not (proto 0): without
        # it a response's body waits for the ACK of its headers (Nagle), up to 40 ms.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self._server = _Server(
            uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off",
                timeout_graceful_shutdown=int(STOP_SECONDS), server_header=False,
            )
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._sock.fileno()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="web")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_SECONDS
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the web server stopped while starting")
            if loop.time() > deadline:
                raise RuntimeError("the web server did not start in time")
            await asyncio.sleep(0.01)
        log.info("web_started", host=self.host, port=self.port)

    async def stop(self) -> None:
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
