"""Accepting connections on listening sockets, pausing (never spinning) when descriptors run out.

asyncio's own accept loop (Python 3.11) keeps calling accept() after EMFILE for the rest of
its batch, logging each failure with a traceback and scheduling a retry for each: with the
descriptors gone that became thousands of log lines a second and a loop at full CPU. Here an
accept that fails for want of descriptors (or memory) stops accepting on that socket for
BACKOFF_SECONDS, once, and is logged at most once a second; connections already open are
served meanwhile and new ones wait in the kernel's backlog.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterable

import structlog

from ticketmail.ratelog import RateLog

__all__ = ["BACKOFF_SECONDS", "Admit", "Listener", "bind", "listen"]

log = structlog.get_logger()

BACKOFF_SECONDS = 0.5
# Connections accepted in one turn of the event loop at most, per socket.
BATCH = 64
BACKLOG = 511
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

# Given the peer's address, the protocol that serves the connection; None refuses it (the
# socket is closed at once).
Admit = Callable[[tuple[str, int]], asyncio.Protocol | None]


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` names (all interfaces when empty)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts on `sockets` for the running loop, each connection served by what `admit`
    gives; shaped like the asyncio.Server it replaces (sockets, is_serving, close)."""

    def __init__(
        self, sockets: Iterable[socket.socket], admit: Admit, *, name: str,
        abandoned: Callable[[asyncio.Protocol], None] | None = None,
    ) -> None:  # fmt: skip
        """`abandoned(protocol)`: a connection admitted could not be handed over (its
        protocol never saw connection_made)."""
        self.sockets = list(sockets)
        self.name = name
        self._admit = admit
        self._abandoned = abandoned
        self._loop = asyncio.get_running_loop()
        self._paused: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._rate_log = RateLog()
        self._serving = False

    def start(self) -> None:
        self._serving = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """Stop accepting and close the listening sockets (new connects are refused)."""
        self._serving = False
        for handle in self._paused.values():
            handle.cancel()
        self._paused.clear()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()

    async def wait_closed(self) -> None:
        """The connections accepted last are handed over (their transports made)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self._pause(sock, exc)
                return
            try:
                conn.setblocking(False)
                protocol = self._admit(peer)
            except BaseException:
                conn.close()
                raise
            if protocol is None:
                conn.close()
                continue
            task = self._loop.create_task(self._hand_over(conn, protocol))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, conn: socket.socket, protocol: asyncio.Protocol) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn)
        except Exception as exc:  # the peer is gone already, or a descriptor is missing
            conn.close()
            log.warning("connection_abandoned", listener=self.name, error=repr(exc))
            if self._abandoned is not None:
                self._abandoned(protocol)

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """No accept on `sock` for BACKOFF_SECONDS (the kernel keeps the new connections)."""
        kind = "out_of_descriptors" if exc.errno in _OUT_OF_RESOURCES else "error"
        self._rate_log.warning(
            "accept_failed", kind, listener=self.name, error=exc.strerror or str(exc),
            backoff_seconds=BACKOFF_SECONDS,
        )  # fmt: skip
        fd = sock.fileno()
        if fd in self._paused:
            return
        self._loop.remove_reader(fd)
        self._paused[fd] = self._loop.call_later(BACKOFF_SECONDS, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        self._paused.pop(sock.fileno(), None)
        if self._serving and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
            self._accept(sock)  # what waited meanwhile, at once


async def listen(
    host: str, port: int, protocol_factory: Callable[[], asyncio.Protocol], *, name: str
) -> Listener:
    """Bind host:port and accept there, every connection served by `protocol_factory()`."""
    listener = Listener(bind(host, port), lambda _peer: protocol_factory(), name=name)
    listener.start()
    return listener
