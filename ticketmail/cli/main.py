"""The `ticketmail` command line: one clear line on error, exit 0 / 1 / 2, --json for lists.

Each command group lives in a module of its own and registers its verbs (`register`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from ticketmail.cli import (
    agents,
    customers,
    held,
    outbox,
    quarantine,
    service,
    storage,
    tickets,
    users,
)
from ticketmail.cli._common import Verbs
from ticketmail.config import load_config, resolve_config_path
from ticketmail.errors import TicketmailError
from ticketmail.logs import configure_logging

__all__ = ["build_parser", "main"]

# In the order `ticketmail --help` lists them.
GROUPS = (service, customers, users, tickets, agents, outbox, held, quarantine, storage)


class _Parser(argparse.ArgumentParser):
    """Every usage error is one line naming the command and where its help is; exit 2."""

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix("ticketmail").strip()
        where = f"{command}: " if command else ""
        _fail(f"{where}{message}; see '{self.prog} --help'")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a --config given before the command is not overwritten by the default after it.
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (else $TICKETMAIL_CONFIG)",
    )
    parser = _Parser(
        prog="ticketmail", description="Inbound mail gateway for support tickets.", parents=[common]
    )
    nouns = parser.add_subparsers(
        dest="noun", required=True, metavar="COMMAND", parser_class=_Parser
    )
    verbs = Verbs(nouns, common, _Parser)
    for group in GROUPS:
        group.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse fills `ticket reply N [-]` at the first positional; a `-` after the options
    # (`ticket reply N --agent A -`) comes back unrecognised and is taken here.
    if extras == ["-"] and getattr(args, "stdin", "-") is None:
        args.stdin = "-"
    elif extras:  # named by the command they were given to, as its own errors are
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        config = load_config(resolve_config_path(getattr(args, "config", None)))
        serving = args.handler is service.cmd_serve
        configure_logging(
            level=config.log.level if serving else "warning",
            fmt=config.log.format,
            node=config.node_name,
        )
        status: int = args.handler(config, args)
        return status
    except TicketmailError as exc:
        _fail(str(exc))
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ticketmail ticket list | head`: the reader left; that is not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's exit quiet
        return 0
    except Exception as exc:
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")
        return 1


def _fail(message: str) -> None:
    """One line on stderr, whatever the message holds (jinja, for one, spans several)."""
    print(
        "ticketmail: " + " | ".join(m.strip() for m in message.splitlines() if m.strip()),
        file=sys.stderr,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
