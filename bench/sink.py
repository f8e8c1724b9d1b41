"""The bare aiosmtpd sink: accepts every mail and discards it, the ceiling of the stack.

Built like ticketmail's own SMTP front (aiosmtpd `SMTP` on the process's event loop through
`loop.create_server`, `decode_data=False`, the same size limit), with nothing behind DATA.
The benchmark runs it twice: as the comparison server, and as ticketmail's relay, where
`--count-file` lets the runner see how many of ticketmail's confirmations arrived.

    python bench/sink.py --port 2526 [--count-file FILE]

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

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


async def serve(port: int, *, count_file: Path | None) -> None:
    handler = DiscardHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="sink.bench.example",
            ident="bench sink ESMTP",
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
        ),
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
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, count_file=args.count_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
