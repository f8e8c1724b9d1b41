"""The bare aiosmtpd sink: accepts every mail and discards it, the ceiling of the stack.

Built like ticketmail's own SMTP front (aiosmtpd `SMTP` on the process's event loop through
`loop.create_server`, `decode_data=False`, the same size limit), with nothing behind DATA.
The benchmark runs it twice: as the comparison server, and as ticketmail's relay, where
`--count-file` lets the runner see how many of ticketmail's confirmations arrived.
`--front ticketmail` puts ticketmail's own SMTP front (`TicketSMTP`: DATA read in chunks,
its command and session caps) in place of aiosmtpd's `SMTP`, still with nothing behind DATA:
what the SMTP dialogue alone costs ticketmail (the runner's `front` target).

    python bench/sink.py --port 2526 [--count-file FILE] [--front aiosmtpd|ticketmail]

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["DiscardHandler", "serve"]

REPLY_DISCARDED = "250 2.0.0 Ok: discarded"
MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # ticketmail's default smtp.max_message_bytes
COUNT_EVERY_SECONDS = 0.25


class DiscardHandler:
    """Counts every mail and keeps nothing."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        self.bytes += len(envelope.original_content or b"")
        return REPLY_DISCARDED


def _write_count(path: Path, handler: DiscardHandler) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{handler.count} {handler.bytes}\n", encoding="ascii")
    tmp.replace(path)


def _protocol(front: str, handler: DiscardHandler) -> Callable[[], SMTP]:
    common: dict[str, Any] = {
        "hostname": "sink.bench.example",
        "ident": "bench sink ESMTP",
        "data_size_limit": MAX_MESSAGE_BYTES,
        "enable_SMTPUTF8": True,
        "decode_data": False,
    }
    if front == "aiosmtpd":
        return lambda: SMTP(handler, **common)
    import dataclasses

    from ticketmail.config import load_config
    from ticketmail.smtp.server import ProtocolFactory

    config = load_config(None, environ={})  # the built-in defaults, data dir ./var (the cwd)
    # As the runner's ticketmail: the load's 50 connections all come from 127.0.0.1.
    smtp = dataclasses.replace(config.smtp, max_sessions_per_ip=100)
    # The discarding handler stands in for ticketmail's (any object with handle_DATA will do).
    return ProtocolFactory(handler, dataclasses.replace(config, smtp=smtp), set())  # type: ignore[arg-type]


async def serve(port: int, *, count_file: Path | None, front: str = "aiosmtpd") -> None:
    handler = DiscardHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        _protocol(front, handler),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    written = -1
    try:
        while not stop.is_set():
            if count_file is not None and handler.count != written:
                written = handler.count
                _write_count(count_file, handler)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=COUNT_EVERY_SECONDS)
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2.0)
        if count_file is not None:
            _write_count(count_file, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--count-file", type=Path, help="keep '<mails> <bytes>' in this file")
    parser.add_argument(
        "--front", choices=("aiosmtpd", "ticketmail"), default="aiosmtpd", help="SMTP protocol"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, count_file=args.count_file, front=args.front))
    return 0


if __name__ == "__main__":
    sys.exit(main())
