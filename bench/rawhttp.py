"""A lean HTTP/1.1 client for the benchmarks: one keep-alive connection per client, GET only.

httpx costs the benchmark process 0.6-2 ms of CPU a request, more than the pages cost the
server; on a 2-core machine that CPU is taken from the server being measured, and 20 clients
through one Python process queue behind each other in the client. This client parses no more
than the status line and Content-Length (or chunked framing), so what the figures show is the
server's answer time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["RawClient", "RawResponse"]


@dataclass(frozen=True, slots=True)
class RawResponse:
    status_code: int
    content: bytes


class RawClient:
    """GETs over one connection, with fixed headers (the session cookie)."""

    def __init__(self, host: str, port: int, cookie: str = "") -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> RawResponse:
        """GET `path`; once more on a new connection when the server had closed the kept
        one while it was idle (its keep-alive timeout: nothing of an answer came back), as
        an HTTP client does for a GET."""
        reused = self._writer is not None
        try:
            return await self._get(path)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            await self.aclose()
            return await self._get(path)

    async def _get(self, path: str) -> RawResponse:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        cookie = f"Cookie: {self.cookie}\r\n" if self.cookie else ""
        self._writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{cookie}\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self._reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        if headers.get("connection") == "close":
            await self.aclose()
        return RawResponse(status, body)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None
